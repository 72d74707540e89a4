//! The model registry against temporary model directories and the repository's own
//! `models/`, and the recognition of exported models for `foodseg-worker models import`.

mod import;
mod registry;
