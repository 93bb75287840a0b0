//! A fleet of balancers: what the nodes share. `store` keeps registrations and admin states
//! in etcd, `store_keys` names them there, `store_watch` brings every change to the
//! controller and `store_writes` puts the API's writes there before they apply.
pub mod store;
pub mod store_keys;
pub mod store_watch;
pub mod store_writes;

#[cfg(test)]
mod store_tests;
#[cfg(test)]
mod test_etcd;
