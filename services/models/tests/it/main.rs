//! The model registry against temporary model directories and the repository's own
//! `models/`.

mod registry;
