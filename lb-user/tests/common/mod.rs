#![allow(dead_code)]
pub mod net;
pub mod proxy_harness;
pub mod webdriver;
