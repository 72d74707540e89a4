//! Checks that hold the repository's documentation to the code.

mod configuration_page;
