//! Table tests of the encoders, sections and dry run.
