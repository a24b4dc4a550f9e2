#![no_main]
//! The `performance` target: see jenkins_autopilot::fuzzing.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let ctx = jenkins_autopilot::fuzzing::context();
    jenkins_autopilot::fuzzing::run("performance", data, &ctx);
});
