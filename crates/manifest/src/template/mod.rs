//! Parameter templates: Go `text/template` semantics with MarbleRun's data model and encoders,
//! and the dry run that checks every template when a manifest is set.
