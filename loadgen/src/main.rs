//! `loadgen`: the load generator. Until the loadgen issue lands it only says so.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    eprintln!("loadgen: not yet implemented; for now run `warren start` and use zkCli.sh or kazoo (see README)");
    std::process::exit(2);
}
