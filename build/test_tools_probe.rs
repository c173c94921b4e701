//! Build script of the packages with tests that need outside programs: without a
//! runnable `redis-server` (and without `HIVENT_REQUIRE_REDIS=1`) it sets
//! `cfg(no_redis_server)`, and without Ruby with ActiveSupport (and without
//! `HIVENT_REQUIRE_RUBY=1`) `cfg(no_ruby_activesupport)`. Those mark the tests that need
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
}
