//! Integration tests of `quarry-common`, and checks that span the workspace.

mod config_docs;
