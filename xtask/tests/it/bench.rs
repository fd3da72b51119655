//! `cargo xtask bench` end to end at a tiny size (hidden `--allow-small`):
//! every contender runs, the numbers reach the table and the JSON, and the
//! work directory is gone afterwards. The timings themselves are not checked:
//! at this size they are noise.

use crate::common::{text, xtask};

#[test]
fn small_bench_reports_every_contender_and_cleans_up() {
    if !test_tier::slow("builds the agent and runs the copy benchmark") {
        return;
    }
    // On the project's disk, like the bench's default dir: the device limit
    // needs a block device (a tmpfs /tmp has none).
    let target = crate::common::root().join("target");
    std::fs::create_dir_all(&target).unwrap();
    let d = tempfile::tempdir_in(&target).unwrap();
    let work = d.path().join("work");
    let json = d.path().join("bench.json");
    let latest = d.path().join("latest.txt");
    let o = xtask(&[
        "bench",
        "--allow-small",
        "--size",
        "8M",
        "--runs",
        "5",
        "--dir",
        work.to_str().unwrap(),
        "--json",
        json.to_str().unwrap(),
        "--latest",
        latest.to_str().unwrap(),
    ]);
    let all = text(&o);
    assert!(o.status.success(), "{all}");
    let stdout = String::from_utf8_lossy(&o.stdout);
    for want in [
        "zfcpdump-agent",
        "dd bs=64K",
        "dd bs=1M",
        "cp + sync",
        "agent, elided",
        "agent, elided / agent: ",
        "agent peak RSS",
        "cannot be measured on this machine",
        "10^6 bytes",
    ] {
        assert!(stdout.contains(want), "no {want:?} in:\n{stdout}");
    }
    assert!(all.contains("[bench] warm-up (not timed): agent 8 MiB 0% zeros ... "));
    assert!(all.contains("[bench] run 5/5: agent 8 MiB 50% zeros ... "));
    assert!(all.contains("[bench] needs "), "{all}");
    assert_eq!(std::fs::read_to_string(&latest).unwrap(), stdout);

    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let results = v["results"].as_array().unwrap();
    assert_eq!(results.len(), 2, "0% and 50% zero pages by default");
    for r in results {
        let cs = r["contenders"].as_array().unwrap();
        let keys: Vec<_> = cs.iter().map(|c| c["key"].as_str().unwrap()).collect();
        assert_eq!(keys, ["agent", "dd_64k", "dd_1m", "cp", "agent_elided"]);
        for c in cs {
            let runs = c["mb_per_s"].as_array().unwrap();
            assert_eq!(runs.len(), 5);
            assert!(runs.iter().all(|x| x.as_f64().unwrap() > 0.0));
        }
        assert_eq!(cs[2]["ratio_to_dd_1m"].as_f64().unwrap(), 1.0);
        // The byte-exact and the elided agent, 5 runs each.
        assert_eq!(r["agent_peak_rss_kib"].as_array().unwrap().len(), 10);
    }
    assert!(v["rss_probe"]["peak_rss_kib"].as_u64().unwrap() > 0);

    // As root (CI), the same vmcores also ran under the 800 MB/s write limit;
    // otherwise the table says why not.
    if crate::common::is_root() {
        assert!(
            stdout.contains("Target: writes limited to 800 MB/s"),
            "{stdout}"
        );
        let limited = v["device_limit"]["results"].as_array().unwrap();
        assert_eq!(limited.len(), 2);
        for r in limited {
            assert_eq!(r["contenders"].as_array().unwrap().len(), 5);
        }
        assert!(all.contains("[bench] run 5/5: agent_elided 8 MiB 50% zeros at 800 MB/s ... "));
    } else {
        assert!(
            stdout.contains("Device-limited section not run: "),
            "{stdout}"
        );
    }

    // Only the (empty) parent is left: the work dir went with the guard.
    let left: Vec<_> = std::fs::read_dir(&work).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn refuses_bad_arguments_before_building() {
    let o = xtask(&["bench", "--runs", "4"]);
    assert!(!o.status.success());
    assert!(text(&o).contains("at least 5"), "{}", text(&o));
    let o = xtask(&["bench", "--size", "9G"]);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("between 256 MiB and 8 GiB"),
        "{}",
        text(&o)
    );
}
