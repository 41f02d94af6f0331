//! The DICOM network layer of `osteon serve` (PS3.7 DIMSE over the PS3.8 upper layer of dicom-ul,
//! async on tokio). It knows nothing of the pipeline: received instances leave through the
//! [`store::InstanceSink`] trait, which `pipeline::spool` implements.
//!
//! * [`scp`]: the listener: association acceptance (AE title checks, allow-list, caps, timeouts),
//!   the per-association receive loop, graceful shutdown.
//! * `association`: one established association (receive loop, C-STORE streaming).
//! * [`dimse`]: command sets encoded/decoded here, P-DATA-TF fragment reassembly.
//! * [`echo`]: C-ECHO (Verification SOP Class, PS3.4 A).
//! * [`store`]: C-STORE statuses and the sink interface (PS3.4 B).
//! * [`sop_classes`]: the storage SOP classes proposed to be accepted.

mod association;
pub mod dimse;
pub mod echo;
pub mod scp;
pub mod scu;
pub mod sop_classes;
pub mod store;

use dicom_dictionary_std::uids;

/// Transfer syntaxes accepted for storage contexts: every one the reader decodes
/// (docs/transfer-syntax.md). The peer's order of preference decides among them (PS3.8 9.3.3.2,
/// dicom-ul picks the first proposed one that is in this list).
pub const TRANSFER_SYNTAXES: [&str; 12] = [
    uids::IMPLICIT_VR_LITTLE_ENDIAN,
    uids::EXPLICIT_VR_LITTLE_ENDIAN,
    // Explicit VR Big Endian is retired (no constant without a deprecation warning) but decoded.
    "1.2.840.10008.1.2.2",
    uids::DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN,
    uids::JPEG_BASELINE8_BIT,
    uids::JPEG_LOSSLESS,
    uids::JPEG_LOSSLESS_SV1,
    uids::JPEGLS_LOSSLESS,
    uids::JPEGLS_NEAR_LOSSLESS,
    uids::JPEG2000_LOSSLESS,
    uids::JPEG2000,
    uids::RLE_LOSSLESS,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listed_transfer_syntax_is_supported_by_the_upper_layer() {
        for ts in TRANSFER_SYNTAXES {
            assert!(
                dicom_ul::association::server::is_supported(ts),
                "{ts} would never be accepted"
            );
        }
        assert_eq!(TRANSFER_SYNTAXES[0], "1.2.840.10008.1.2");
        assert_eq!(TRANSFER_SYNTAXES[11], "1.2.840.10008.1.2.5");
    }

    #[test]
    fn other_storage_excludes_the_stored_ct_classes() {
        for ct in sop_classes::STORED {
            assert!(!sop_classes::OTHER_STORAGE.contains(&ct));
        }
        assert!(sop_classes::OTHER_STORAGE.contains(&uids::SECONDARY_CAPTURE_IMAGE_STORAGE));
        assert!(sop_classes::OTHER_STORAGE.contains(&uids::X_RAY_RADIATION_DOSE_SR_STORAGE));
    }
}
