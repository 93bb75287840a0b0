//! What the lb-control integration tests share.
pub mod etcd;
