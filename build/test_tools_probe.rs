//! Build script of the packages with tests that need outside programs: without a
//! runnable `redis-server` (and without `HIVENT_REQUIRE_REDIS=1`) it sets
//! `cfg(no_redis_server)` (and without `redis-cli`, which makes test clusters,
//! `cfg(no_redis_cli)`), without Ruby with ActiveSupport (and without
//! `HIVENT_REQUIRE_RUBY=1`) `cfg(no_ruby_activesupport)`, and where no pid namespace can
//! be made `cfg(no_pid_namespaces)`, and without the openssl tool `cfg(no_openssl)`. Those mark the tests that need
//! them ignored with the reason, so `cargo test` shows them as not run rather than as
//! passed; CI installs both and requires them.

use std::process::Command;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(no_redis_server)");
    println!("cargo::rerun-if-env-changed=HIVENT_REQUIRE_REDIS");
    println!("cargo::rerun-if-env-changed=HIVENT_REDIS_SERVER");
    println!("cargo::rerun-if-env-changed=PATH");
    let required = std::env::var("HIVENT_REQUIRE_REDIS").is_ok_and(|v| v == "1");
    let binary = std::env::var("HIVENT_REDIS_SERVER").unwrap_or_else(|_| "redis-server".to_owned());
    let runnable = Command::new(binary)
        .arg("--version")
        .output()
        .is_ok_and(|out| out.status.success());
    if !runnable && !required {
        println!("cargo::rustc-cfg=no_redis_server");
    }

    // The Redis Cluster tests create their clusters with `redis-cli --cluster create`.
    println!("cargo::rustc-check-cfg=cfg(no_redis_cli)");
    println!("cargo::rerun-if-env-changed=HIVENT_REDIS_CLI");
    let cli = std::env::var("HIVENT_REDIS_CLI").unwrap_or_else(|_| "redis-cli".to_owned());
    let cli_runnable = Command::new(cli)
        .arg("--version")
        .output()
        .is_ok_and(|out| out.status.success());
    if !cli_runnable && !required {
        println!("cargo::rustc-cfg=no_redis_cli");
    }

    println!("cargo::rustc-check-cfg=cfg(no_ruby_activesupport)");
    println!("cargo::rerun-if-env-changed=HIVENT_REQUIRE_RUBY");
    let ruby_required = std::env::var("HIVENT_REQUIRE_RUBY").is_ok_and(|v| v == "1");
    let ruby = Command::new("ruby")
        .args([
            "-e",
            "require 'active_support'; require 'active_support/json'",
        ])
        .output()
        .is_ok_and(|out| out.status.success());
    if !ruby && !ruby_required {
        println!("cargo::rustc-cfg=no_ruby_activesupport");
    }

    // Making a pid namespace needs util-linux's unshare and the right to do so (root);
    // CI has both, and HIVENT_REQUIRE_REDIS=1 there makes the test run either way.
    println!("cargo::rustc-check-cfg=cfg(no_pid_namespaces)");
    let namespaces = Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc", "true"])
        .output()
        .is_ok_and(|out| out.status.success());
    if !namespaces && !required {
        println!("cargo::rustc-cfg=no_pid_namespaces");
    }

    // The TLS test makes its certificates with the openssl tool.
    println!("cargo::rustc-check-cfg=cfg(no_openssl)");
    let openssl = Command::new("openssl")
        .arg("version")
        .output()
        .is_ok_and(|out| out.status.success());
    if !openssl && !required {
        println!("cargo::rustc-cfg=no_openssl");
    }
}
