//! Build resource profiles: the ladder (light, medium, heavy, intensive), the rules that
//! pick one by build type and load, and (in `recommend`) the per-job learned sizes.

pub mod analysis;
pub mod choose;
pub mod load;
pub mod pod_yaml;
pub mod recommend;
pub mod rules;
pub mod settings;

pub use crate::domain::{Bytes, Millicores, QuantityError};

/// A build type as pipelines name it (`build`, `test`, `deploy`, ...): lower-cased, 1 to
/// 64 letters, digits, `-` or `_`.
pub fn build_type(raw: &str) -> Result<String, &'static str> {
    let t = raw.trim().to_ascii_lowercase();
    if t.is_empty()
        || t.len() > 64
        || !t
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err("must be 1 to 64 letters, digits, '-' or '_'");
    }
    Ok(t)
}
