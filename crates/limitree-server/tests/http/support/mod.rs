//! What the test modules share, one thing in one place (see the list in
//! `main.rs`).

pub mod certs;
pub mod policy;
pub mod poll;
pub mod rls;
pub mod served;
pub mod server;
pub mod slack;

/// A loopback port nothing listens on (bound, then let go), for a server
/// that is down or not yet started there.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The status `GET url` answers with, or 0 if nothing answers.
#[cfg_attr(
    not(feature = "redis"),
    expect(dead_code, reason = "used by the Redis tests only")
)]
pub async fn get_status(client: &reqwest::Client, url: &str) -> u16 {
    match client.get(url).send().await {
        Ok(r) => r.status().as_u16(),
        Err(_) => 0,
    }
}
