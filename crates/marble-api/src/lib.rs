//! The Marble activation protocol (`rpc.Marble/Activate`), shared by the Coordinator and
//! the premain launcher.
