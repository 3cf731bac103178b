//! `nsq_to_file`: write the messages of NSQ topics to files. See [`nsq_tools::to_file`].

fn main() -> std::process::ExitCode {
    nsq_tools::cli::main::<nsq_tools::to_file::ToFileArgs>()
}
