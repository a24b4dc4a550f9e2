//! Build resource profiles: the ladder (light, medium, heavy, intensive), the rules that
//! pick one by build type and load, and (in `recommend`) the per-job learned sizes.

pub mod quantity;
pub mod recommend;
pub mod rules;
pub mod settings;

pub use quantity::{Bytes, Millicores, QuantityError};
