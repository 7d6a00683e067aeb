//! `[server] grpc_tls`: the gRPC listener over TLS, against `limitree serve`
//! with a CA and certificate made in the test (rcgen). A tonic client that
//! trusts the CA gets answers; a plaintext (h2c) client and a client trusting
//! another CA get none. Bad certificate or key files are config errors that
//! name the file (exit 64).

use std::path::Path;
use std::process::Command;

use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::Code;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_client::RateLimitServiceClient;
use rstest::rstest;
use tonic::transport::{Certificate, Channel, ClientTlsConfig};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::support::certs::make_certificates;
use crate::support::rls::{ask, code, descriptor, grpc_addr, request};
use crate::support::served::{BIN, Served, text, write_config};

/// A `[server]` section with `grpc_tls` naming `cert` and `key`.
fn tls_config(name: &str, cert: &Path, key: &Path) -> std::path::PathBuf {
    write_config(
        name,
        &format!(
            "[server]\ngrpc_tls = {{ cert = {:?}, key = {:?} }}\n",
            cert.to_str().unwrap(),
            key.to_str().unwrap()
        ),
    )
}

/// A TLS channel to `served` that trusts only the CA in `ca`.
async fn tls_channel(served: &Served, ca: &Path) -> Result<Channel, tonic::transport::Error> {
    let ca = Certificate::from_pem(std::fs::read(ca).unwrap());
    Channel::from_shared(format!("https://{}", grpc_addr(served)))
        .unwrap()
        .tls_config(ClientTlsConfig::new().ca_certificate(ca))?
        .connect()
        .await
}

/// How the server is told: `[server] grpc_tls` in a TOML config, or the
/// `--grpc-tls-cert`/`--grpc-tls-key` flags (with the shipped
/// envoyproxy/ratelimit YAML, which has no `[server]`).
#[derive(Debug, Clone, Copy)]
enum Told {
    Toml,
    FlagsWithYaml,
}

#[rstest]
#[case::toml_grpc_tls(Told::Toml)]
#[case::flags_with_a_yaml_config(Told::FlagsWithYaml)]
#[tokio::test]
async fn grpc_over_tls_answers_a_client_trusting_the_ca_and_no_other(#[case] told: Told) {
    let dir = tempfile::tempdir().unwrap();
    let files = make_certificates(dir.path(), "grpc", "grpc");
    let config = tls_config(&format!("grpc-tls-{told:?}.toml"), &files.cert, &files.key);
    let yaml = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/envoy/ratelimit");
    let (cert, key) = (files.cert.to_str().unwrap(), files.key.to_str().unwrap());
    let args: Vec<&str> = match told {
        Told::Toml => vec!["--config", config.to_str().unwrap()],
        Told::FlagsWithYaml => vec![
            "--config",
            yaml,
            "--grpc-tls-cert",
            cert,
            "--grpc-tls-key",
            key,
        ],
    };
    let served = Served::start(&[&["--http", "127.0.0.1:0"][..], &args].concat());
    assert!(
        served
            .early
            .iter()
            .any(|l| l.contains("gRPC listening on") && l.contains("(TLS;")),
        "{:?}",
        served.early
    );

    let channel = tls_channel(&served, &files.ca)
        .await
        .expect("a TLS connection to a certificate the CA signed");
    let mut client = RateLimitServiceClient::new(channel.clone());
    let errors = || request("notifications", vec![descriptor(&[("category", "errors")])]);
    let r = ask(&mut client, errors()).await;
    assert_eq!(code(r.overall_code), Code::Ok);
    assert_eq!(r.statuses[0].limit_remaining, 9);
    let health = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("the health service over TLS")
        .into_inner();
    assert_eq!(health.status, ServingStatus::Serving as i32);

    // h2c to a TLS listener: the server reads no HTTP/2 preface, only bytes
    // that are not a TLS ClientHello, and closes the connection.
    let plaintext = async {
        let channel = Channel::from_shared(format!("http://{}", grpc_addr(&served)))
            .unwrap()
            .connect()
            .await
            .map_err(|e| format!("connect: {e}"))?;
        RateLimitServiceClient::new(channel)
            .should_rate_limit(errors())
            .await
            .map_err(|e| format!("call: {e}"))
    };
    let refused = plaintext.await;
    assert!(refused.is_err(), "a plaintext client got {refused:?}");

    // A client that trusts another CA refuses the server's certificate.
    let other = tempfile::tempdir().unwrap();
    let other_ca = make_certificates(other.path(), "other", "grpc").ca;
    let untrusted = match tls_channel(&served, &other_ca).await {
        Ok(channel) => RateLimitServiceClient::new(channel)
            .should_rate_limit(errors())
            .await
            .map(|_| ())
            .map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    assert!(
        untrusted.is_err(),
        "a client trusting another CA got an answer"
    );

    // Neither refused client was charged anything.
    let r = ask(&mut client, errors()).await;
    assert_eq!(r.statuses[0].limit_remaining, 8);

    // `config check` says the listener is TLS and with which files.
    if let Told::Toml = told {
        let out = Command::new(BIN)
            .args(["config", "check", config.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let stdout = text(&out.stdout);
        assert!(
            stdout.contains(&format!(
                "grpc 127.0.0.1:8081 (TLS: cert {cert}, key {key})"
            )),
            "{stdout}"
        );
    }
}

/// What a broken `grpc_tls` makes of `config check` and `serve`: exit 64,
/// the key and the file named, and what to give instead.
#[rstest]
#[case::missing_cert("missing-cert", &["[server.grpc_tls] cert", "cannot read", "nope.pem", "give the path of a PEM file"])]
#[case::missing_key("missing-key", &["[server.grpc_tls] key", "cannot read", "nope.key"])]
#[case::cert_is_not_pem("cert-not-pem", &["[server.grpc_tls] cert", "holds no PEM certificate", "junk.pem"])]
#[case::key_is_a_certificate("key-is-cert", &["[server.grpc_tls] key", "holds no PEM private key", "grpc.pem"])]
#[case::key_of_another_certificate("other-key", &["[server] grpc_tls", "cannot serve the certificate in", "other.key", "grpc.pem"])]
fn a_bad_grpc_tls_file_is_a_config_error_naming_it(#[case] case: &str, #[case] needles: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let files = make_certificates(dir.path(), "grpc", "grpc");
    let other = make_certificates(dir.path(), "other", "other");
    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "not a certificate\n").unwrap();
    let nope = |name: &str| dir.path().join(name);
    let (cert, key) = match case {
        "missing-cert" => (nope("nope.pem"), files.key.clone()),
        "missing-key" => (files.cert.clone(), nope("nope.key")),
        "cert-not-pem" => (junk, files.key.clone()),
        "key-is-cert" => (files.cert.clone(), files.cert.clone()),
        "other-key" => (files.cert.clone(), other.key.clone()),
        _ => unreachable!("{case}"),
    };
    let config = tls_config(&format!("grpc-tls-{case}.toml"), &cert, &key);
    let check = Command::new(BIN)
        .args(["config", "check", config.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(check.status.code(), Some(64), "{check:?}");
    let stderr = text(&check.stderr);
    for needle in needles {
        assert!(stderr.contains(needle), "{needle:?} in\n{stderr}");
    }
    // Whatever the files hold, the message quotes none of it.
    for file in [&cert, &key] {
        for line in std::fs::read_to_string(file).unwrap_or_default().lines() {
            let body = !line.starts_with("-----") && line.len() > 16;
            assert!(
                !(body && stderr.contains(line)),
                "{file:?}'s contents in the message:\n{stderr}"
            );
        }
    }

    let serve = Command::new(BIN)
        .args([
            "serve",
            "--config",
            config.to_str().unwrap(),
            "--http",
            "127.0.0.1:0",
            "--grpc",
            "127.0.0.1:0",
        ])
        .env_remove("SLACK_WEBHOOK_URL")
        .output()
        .unwrap();
    assert_eq!(serve.status.code(), Some(64), "{serve:?}");
    assert!(text(&serve.stderr).contains(needles[0]), "{serve:?}");
}
