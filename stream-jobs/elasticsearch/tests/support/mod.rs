pub mod checks;
pub mod openapi;
