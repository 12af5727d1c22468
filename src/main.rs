/// mimalloc: the request path allocates many small buffers; glibc malloc showed up at ~15% of
/// the ingest profile (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    handoff::cli::main()
}
