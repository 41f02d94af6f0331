//! DICOM in and out: reading CT (lenient file parsing, pixel decoding to HU, series assembly with exact
//! geometry) and writing the two result objects (Segmentation, Encapsulated STL). No ML, no network.

pub mod ct_writer;
pub mod geometry;
pub mod meta;
pub mod pixels;
pub mod seg;
pub mod series;
pub mod stl_object;
pub mod uid;
pub mod write;
