//! `hivent emit`: emit one event from the command line and print it.

use std::io::Read;

use clap::Args;
use hivent::EmitOptions;

use crate::exit::Failure;
use crate::options::ConnectionArgs;

/// The options of `emit`.
#[derive(Args, Clone, Debug)]
pub struct EmitArgs {
    /// The signal name
    pub name: String,
    /// The event version
    #[arg(long)]
    pub version: i64,
    /// The payload as JSON; read from stdin when not given
    #[arg(long, value_name = "JSON")]
    pub payload: Option<String>,
    /// Partition key (default: the payload's JSON)
    #[arg(long)]
    pub key: Option<String>,
    /// Correlation id (default: a new one)
    #[arg(long)]
    pub cid: Option<String>,
    /// Connection options; `--client-id` is the producer (default `hivent-cli`).
    #[command(flatten)]
    pub connection: ConnectionArgs,
}

/// Emits the event and prints it as JSON on stdout.
pub fn run(args: &EmitArgs) -> Result<(), Failure> {
    let text = match &args.payload {
        Some(text) => text.clone(),
        None => {
            let mut text = String::new();
            std::io::stdin().read_to_string(&mut text).map_err(|e| {
                Failure::Usage(format!("could not read the payload from stdin: {e}"))
            })?;
            text
        }
    };
    let payload: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Failure::Usage(format!("the payload is not valid JSON: {e}")))?;
    let config = args.connection.config_for_tool()?;
    crate::options::require_shared_backend(&config, "emit")?;
    let backend = crate::options::describe_backend(&config);
    let hivent = hivent::connect(config)?;
    let mut options = EmitOptions::version(args.version);
    if let Some(key) = &args.key {
        options = options.key(key);
    }
    if let Some(cid) = &args.cid {
        options = options.cid(cid);
    }
    let emitted = hivent
        .signal(&args.name)?
        .emit_with_receipt(&payload, options)?;
    let event = &emitted.event;
    println!("{}", event.to_json());
    match emitted.receiving_services {
        0 => eprintln!(
            "hivent: warning: no service receives {:?} on {backend}: event {} was stored nowhere",
            args.name, event.meta.event_uuid
        ),
        n => eprintln!(
            "hivent: emitted {} to {n} service(s) on {backend}",
            event.meta.event_uuid
        ),
    }
    Ok(())
}
