//! Thin entry point: PID-1 mode when getpid() == 1, tool mode otherwise.
//! Only PID-1 mode mounts, installs signal handlers, re-IPLs or powers off.

use std::process::ExitCode;
use zfcpdump_agent::tool::{self, Command};
use zfcpdump_agent::{Env, report, run, sys};

fn main() -> ExitCode {
    if sys::is_pid1() { pid1() } else { tool_mode() }
}

/// /init of the dump initramfs. Never returns: every path ends in power_off().
fn pid1() -> ! {
    sys::install_signal_handlers();
    sys::set_panic_hook(true);
    let mut env = Env::new("/");
    env.pid1 = true;
    let result = run(&env);
    report(&result, &env.log);
    sys::power_off()
}

fn tool_mode() -> ExitCode {
    let env = match tool::parse_args(std::env::args_os().skip(1)) {
        Ok(Command::Help) => {
            print!("{}", tool::HELP);
            return ExitCode::SUCCESS;
        }
        Ok(Command::Run(env)) => env,
        Err(msg) => {
            eprintln!("zfcpdump-agent: {msg}\nTry 'zfcpdump-agent --help'.");
            return ExitCode::from(tool::EXIT_USAGE as u8);
        }
    };
    sys::set_panic_hook(false);
    let result = run(&env);
    report(&result, &env.log);
    if result.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(tool::EXIT_FAILED as u8)
    }
}
