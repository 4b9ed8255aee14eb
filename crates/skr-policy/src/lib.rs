//! Azure Secure Key Release policies: the document model, its evaluation against the
//! claims of an attestation token, and an explanation of why a token does or does not satisfy it.
