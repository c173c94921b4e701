//! Logging to stderr through `tracing`; the consume loop logs each life-cycle event itself.

/// Installs a stderr subscriber at `level`; fails on an unknown level name.
pub fn init(level: &str) -> Result<(), String> {
    let filter: tracing::level_filters::LevelFilter = level.parse().map_err(|_| {
        format!("unknown log level {level:?} (use error, warn, info, debug or trace)")
    })?;
    // A second initialisation (tests running several workers) keeps the first.
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_max_level(filter)
        .with_target(false)
        .try_init();
    Ok(())
}
