//! UID generation (PS3.5 §9 and Annex B.2: UUID-derived UIDs under the `2.25` root).

/// A new globally unique UID `2.25.<decimal of a random 128-bit UUID>` (at most 64 characters).
pub fn new_uid() -> String {
    format!("2.25.{}", uuid::Uuid::new_v4().as_u128())
}

#[cfg(test)]
mod tests {
    #[test]
    fn uid_is_valid_and_unique() {
        let a = super::new_uid();
        let b = super::new_uid();
        assert_ne!(a, b);
        assert!(a.len() <= 64, "{a}");
        assert!(a.starts_with("2.25."));
        assert!(a[5..].chars().all(|c| c.is_ascii_digit()));
        assert!(!a[5..].starts_with('0') || a.len() == 6);
    }
}
