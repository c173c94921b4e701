//! hivent-cli: the worker process and operations CLI (not built yet; see the CLI issue).
