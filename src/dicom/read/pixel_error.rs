//! [`PixelError`]: why a slice's pixels could not be turned into HU (src/dicom/pixels.rs).

use std::path::PathBuf;

/// Errors of pixel decoding; each names the file and the attribute or transfer syntax at fault.
#[derive(Clone, Debug, thiserror::Error)]
pub enum PixelError {
    /// A required attribute is absent or unreadable.
    #[error("{file}: missing or invalid {attribute}")]
    MissingAttribute {
        file: PathBuf,
        attribute: &'static str,
    },
    /// PhotometricInterpretation other than MONOCHROME1/2 or SamplesPerPixel other than 1.
    #[error("{file}: not a grey-scale image (PhotometricInterpretation {photometric}, SamplesPerPixel {samples})")]
    NotMonochrome {
        file: PathBuf,
        photometric: String,
        samples: u16,
    },
    /// BitsAllocated/BitsStored combination we do not read.
    #[error("{file}: unsupported BitsAllocated {bits_allocated} / BitsStored {bits_stored}")]
    UnsupportedBits {
        file: PathBuf,
        bits_allocated: u16,
        bits_stored: u16,
    },
    /// The object has no (7FE0,0010) PixelData.
    #[error("{file}: no PixelData (7FE0,0010)")]
    NoPixelData { file: PathBuf },
    /// Fewer pixel bytes than Rows x Columns x frames needs.
    #[error("{file}: frame {frame}: PixelData holds {got} bytes, {expected} expected")]
    ShortPixelData {
        file: PathBuf,
        frame: u32,
        got: usize,
        expected: usize,
    },
    /// A frame asked for that the object does not have (NumberOfFrames), or a target of another
    /// shape than Rows x Columns.
    #[error("{file}: frame {frame} of shape {shape:?} asked for; the object has {frames} frame(s) of Rows x Columns {rows_cols:?}")]
    NoSuchFrame {
        file: PathBuf,
        frame: usize,
        shape: (usize, usize),
        frames: u32,
        rows_cols: (usize, usize),
    },
    /// The codec failed or the transfer syntax has no decoder.
    #[error("{file}: cannot decode frame {frame} of transfer syntax {transfer_syntax}: {reason}")]
    Decode {
        file: PathBuf,
        transfer_syntax: String,
        frame: u32,
        reason: String,
    },
    /// The codec panicked (caught at our panic boundary).
    #[error("{file}: decoder for transfer syntax {transfer_syntax} panicked: {message}")]
    DecoderPanic {
        file: PathBuf,
        transfer_syntax: String,
        message: String,
    },
    /// More than 1% of the voxels lie outside [-4096, 32767] HU, or any voxel is not a finite
    /// number: the codec produced garbage (e.g. a corrupt JPEG lossless stream that every decoder,
    /// dcmtk included, "decodes"), or the rescale is absurd (both are named: a RescaleSlope of 1e30
    /// is the cause, not the pixels; 1e300 makes infinite HU even where only a few voxels are not
    /// padding).
    #[error("{file}: frame {frame}: {fraction_pct:.1}% of the voxels outside [-4096, 32767] HU with RescaleSlope {slope} and RescaleIntercept {intercept}: corrupt pixel data or rescale")]
    ImplausibleHu {
        file: PathBuf,
        frame: u32,
        fraction_pct: f64,
        /// RescaleSlope (0028,1053) used for the frame.
        slope: f64,
        /// RescaleIntercept (0028,1052) used for the frame.
        intercept: f64,
    },
    /// An attribute holds a value outside what the standard (or CT) allows.
    #[error("{file}: {attribute} {value:?}: {reason}")]
    BadAttribute {
        file: PathBuf,
        attribute: &'static str,
        value: String,
        reason: &'static str,
    },
    /// RescaleSlope/RescaleIntercept unparsable, NaN, infinite, or a slope of 0 (PS3.3 C.11.1.1.2).
    #[error("{file}: {attribute} {value:?} is not a usable rescale (finite, slope non-zero)")]
    BadRescale {
        file: PathBuf,
        attribute: &'static str,
        value: String,
    },
    /// The native PixelData holds fewer bytes than Rows x Columns x NumberOfFrames x BitsAllocated/8.
    #[error("{file}: PixelData (7FE0,0010) holds {got} bytes, Rows {rows} x Columns {cols} x NumberOfFrames {frames} x BitsAllocated {bits_allocated}/8 = {expected}")]
    PixelDataLength {
        file: PathBuf,
        rows: usize,
        cols: usize,
        frames: u32,
        bits_allocated: u16,
        got: u64,
        expected: u64,
    },
    /// A TransferSyntaxUID (0002,0010) that is not a DICOM transfer syntax.
    #[error("{file}: unknown TransferSyntaxUID (0002,0010) {uid:?}")]
    UnknownTransferSyntax { file: PathBuf, uid: String },
    /// Encapsulated pixel data under a native transfer syntax, or native under an encapsulated one
    /// (PS3.5 A.4).
    #[error("{file}: PixelData (7FE0,0010) is {found} but TransferSyntaxUID (0002,0010) {transfer_syntax} requires {expected}")]
    EncapsulationMismatch {
        file: PathBuf,
        transfer_syntax: String,
        found: &'static str,
        expected: &'static str,
    },
    /// Encapsulated fragments could not be assigned to frames (PS3.5 A.4).
    #[error("{file}: cannot split {fragments} fragments into {frames} frames")]
    Fragments {
        file: PathBuf,
        fragments: usize,
        frames: u32,
    },
}
