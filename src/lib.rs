//! Osteon: a DICOM node that turns cranial CT into bone segmentations and 3D-printable skull models.
//!
//! # Layout
//! The folders follow the data flow; a module may use the ones before it, never after it.
//!
//! * [`dicom`]: DICOM in and out, no ML and no network. Reading Part-10 files leniently
//!   ([`dicom::meta`]), decoding pixels to HU ([`dicom::pixels`]), assembling a series into a
//!   [`dicom::series::CtVolume`] with exact per-slice geometry ([`dicom::series`]), writing the DICOM
//!   Segmentation ([`dicom::seg`]) and the Encapsulated STL ([`dicom::stl_object`]).
//! * [`segment`]: a [`segment::Segmenter`] takes a `CtVolume` and returns a bone [`segment::Mask`];
//!   the classical threshold baseline lives in [`segment::threshold`].
//! * [`mesh`]: iso-surface of a mask in LPS mm (watertight, manifold), smoothing, decimation, STL.
//! * [`config`]: the node's typed configuration (TOML + `OSTEON__SECTION__KEY` overrides).
//! * [`net`]: DIMSE over dicom-ul (async SCP: C-ECHO, C-STORE), knowing nothing of the pipeline.
//! * [`pipeline`]: wires the stages together; [`pipeline::offline`] is `osteon segment`,
//!   [`pipeline::serve`] the node (spool of received instances, then the worker).
//! * [`phantom`]: synthetic head CT with exact bone labels from virtual scanner profiles
//!   (`osteon phantom`).
//! * [`label`]: training and evaluation labels: a closed STL voxelised onto a CT grid
//!   ([`label::voxelise`], `osteon label --stl`) and the reference procedure for real scans
//!   ([`label::reference`], `osteon label --reference`).
//! * [`train`]: training the CNN of [`segment::cnn`] on the scans of a manifest (`osteon train`).
//! * [`eval`]: scoring a segmentation against a label (DSC, signed surface deviation,
//!   [`eval::metrics`]) over the scans of a TOML manifest ([`eval::manifest`], `osteon evaluate`).
//!
//! Conventions: patient coordinates are DICOM LPS in millimetres everywhere; volume arrays are
//! `[k, j, i]` = `[slice, row, column]`; HU are `f32`.

pub mod config;
pub mod dicom;
pub mod eval;
pub mod label;
pub mod mesh;
pub mod net;
pub mod phantom;
pub mod pipeline;
pub mod segment;
pub mod torch_info;
pub mod train;
