#![allow(dead_code)]
pub mod harness;
pub mod net;
pub mod packet;
pub mod proxy_harness;
