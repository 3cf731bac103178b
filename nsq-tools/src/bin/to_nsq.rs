//! `to_nsq`: publish the lines of stdin to an NSQ topic. See [`nsq_tools::to_nsq`].

fn main() -> std::process::ExitCode {
    nsq_tools::cli::main::<nsq_tools::to_nsq::ToNsqArgs>()
}
