//! `soak`: the operator under every fault at once, then checked (`hack/soak.sh`).

fn main() -> std::process::ExitCode {
    report_bench::soak::main()
}
