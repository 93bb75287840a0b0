#![allow(dead_code)]
pub mod net;
pub mod proxy_harness;
pub mod sources;
pub mod webdriver;
