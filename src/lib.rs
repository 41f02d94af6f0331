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
//! * [`pipeline`]: wires the stages together; [`pipeline::offline`] is `osteon segment`.
//!
//! Conventions: patient coordinates are DICOM LPS in millimetres everywhere; volume arrays are
//! `[k, j, i]` = `[slice, row, column]`; HU are `f32`.

pub mod dicom;
pub mod mesh;
pub mod phantom;
pub mod pipeline;
pub mod segment;
pub mod torch_info;
