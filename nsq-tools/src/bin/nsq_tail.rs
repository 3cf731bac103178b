//! `nsq_tail`: print the messages of NSQ topics to stdout. See [`nsq_tools::tail`].

fn main() -> std::process::ExitCode {
    nsq_tools::cli::main::<nsq_tools::tail::TailArgs>()
}
