//! `hivent bench --cluster`: the emit and drain figures again on a Redis Cluster the
//! run starts itself (3 masters), beside the single node's, and the cost of waiting for
//! a replica's acknowledgement (3 masters with a replica each, `replica_acks(1)`).

use std::sync::Arc;
use std::time::Duration;

use hivent::backend::Backend;
use hivent::{RedisClusterBackend, RedisOptions};
use hivent_redis::test_cluster::RedisCluster;
use hivent_redis::test_server::ServerError;

use crate::bench::failure::bench_error;
use crate::bench::progress::Progress;
use crate::bench::report::Throughput;
use crate::bench::scene::Scene;
use crate::bench::BenchArgs;
use crate::exit::Failure;

/// Starts a throwaway cluster of `masters` masters with `replicas` replicas each.
pub(crate) fn start(masters: usize, replicas: usize) -> Result<RedisCluster, Failure> {
    RedisCluster::start(masters, replicas).map_err(|e| match e {
        ServerError::NotInstalled => Failure::Usage(format!(
            "{e}; --cluster starts a Redis Cluster, which needs redis-server and redis-cli"
        )),
        other => Failure::Runtime(bench_error(&hivent::ErrorChain(&other).to_string())),
    })
}

/// A figure measured on a cluster, keyed and named as such and compared with the
/// single node's figure `reference`.
fn on_cluster(
    mut figure: Throughput,
    key: &'static str,
    what: &str,
    reference: &'static str,
) -> Throughput {
    figure.key = key;
    figure.name = format!("{what}: {}", figure.name);
    figure.against(reference, None)
}

fn cluster_scene(
    seeds: &str,
    options: RedisOptions,
    args: &BenchArgs,
    prefix: &str,
) -> Result<Scene, Failure> {
    let backend = RedisClusterBackend::with_options(seeds, options)
        .map_err(|e| Failure::from(hivent::Error::from(e)))?;
    let backend: Arc<dyn Backend> = Arc::new(backend);
    Ok(Scene::new(
        backend,
        prefix,
        args.partitions,
        args.payload_bytes,
        args.fetch_batch,
    ))
}

/// The cluster figures: batch emit, drain with 1 and n workers and single emit on 3
/// masters; single and batch emit waiting for one replica on 3 masters with a replica
/// each. `hold` keeps each cluster for the run's guard, which stops it on every way
/// out, and gives back its seeds.
pub(crate) fn measure(
    args: &BenchArgs,
    prefix: &str,
    progress: &Progress,
    hold: impl Fn(RedisCluster) -> String,
) -> Result<Vec<Throughput>, Failure> {
    let n = args.events;
    let options = RedisOptions::default().emit_marker_ttl(Duration::from_secs(60));
    let seeds = hold(start(3, 0)?);
    let scene = cluster_scene(&seeds, options.clone(), args, prefix)?;
    let what = "cluster";
    // Each drain works through the backlog of the batch emit before it.
    let mut figures = vec![on_cluster(
        scene.batch_emit(n, args.emit_batch, progress, "cluster batch emit")?,
        "cluster_batch_emit",
        what,
        "batch_emit",
    )];
    figures.push(on_cluster(
        scene.drain("cluster_drain_1", 1, n, progress)?,
        "cluster_drain_1",
        what,
        "drain_1",
    ));
    scene.batch_emit(n, args.emit_batch, progress, "cluster: refill the backlog")?;
    figures.push(on_cluster(
        scene.drain("cluster_drain_n", args.workers, n, progress)?,
        "cluster_drain_n",
        what,
        "drain_n",
    ));
    figures.push(on_cluster(
        scene.single_emit(n, progress)?,
        "cluster_single_emit",
        what,
        "single_emit",
    ));
    drop(scene);
    let seeds = hold(start(3, 1)?);
    let durable = cluster_scene(&seeds, options.replica_acks(1), args, prefix)?;
    let what = "cluster, WAIT 1";
    figures.push(on_cluster(
        durable.single_emit(n, progress)?,
        "cluster_single_emit_acked",
        what,
        "cluster_single_emit",
    ));
    figures.push(on_cluster(
        durable.batch_emit(n, args.emit_batch, progress, "cluster batch emit, acked")?,
        "cluster_batch_emit_acked",
        what,
        "cluster_batch_emit",
    ));
    Ok(figures)
}
