//! C-ECHO SCP (Verification SOP Class 1.2.840.10008.1.1, PS3.4 Annex A; PS3.7 9.1.5).

use super::dimse::{self, CommandSet, DimseError};

/// The C-ECHO-RSP (status success) to a C-ECHO-RQ `request`; the response names the request's
/// AffectedSOPClassUID, or Verification when it has none.
///
/// Errors: [`DimseError::MissingElement`] when the request has no MessageID.
pub fn respond(request: &CommandSet) -> Result<CommandSet, DimseError> {
    let message_id = request.message_id()?;
    let sop_class = request
        .string(dimse::AFFECTED_SOP_CLASS_UID)
        .unwrap_or_else(|| dicom_dictionary_std::uids::VERIFICATION.to_owned());
    Ok(dimse::c_echo_rsp(message_id, &sop_class))
}
