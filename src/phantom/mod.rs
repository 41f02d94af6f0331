//! Synthetic head CT phantoms with exact bone labels (`osteon phantom`).
pub mod cli;
