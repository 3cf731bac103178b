//! `nsq_stat`: show an NSQ channel's depth and rates, live. See [`nsq_tools::stat`].

fn main() -> std::process::ExitCode {
    nsq_tools::cli::main::<nsq_tools::stat::StatArgs>()
}
