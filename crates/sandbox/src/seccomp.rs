//! The seccomp filters every sandboxed run gets: system calls a job never needs are refused
//! with `EPERM`, so a handler sees a clear error instead of being killed.
//!
//! Two classic-BPF programs, compiled by `seccompiler` for this machine's architecture
//! (x86_64 or aarch64) and handed to bubblewrap by file descriptor. The second answers
//! `clone3` with `ENOSYS`: its flags sit in memory a filter cannot read, and `ENOSYS` makes the
//! C library fall back to `clone`, whose `CLONE_NEWUSER` flag the first filter can see.

use crate::error::SandboxError;
use nix::libc;
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};
use serde_json::json;
use std::collections::BTreeMap;

/// System calls refused whatever their arguments: debugging other processes, mounting,
/// kernel extension points, key rings, `io_uring`, namespaces, and machine administration.
const DENIED: [(&str, i64); 27] = [
    ("ptrace", libc::SYS_ptrace),
    ("mount", libc::SYS_mount),
    ("umount2", libc::SYS_umount2),
    ("pivot_root", libc::SYS_pivot_root),
    ("fsopen", libc::SYS_fsopen),
    ("fsmount", libc::SYS_fsmount),
    ("move_mount", libc::SYS_move_mount),
    ("open_tree", libc::SYS_open_tree),
    ("mount_setattr", libc::SYS_mount_setattr),
    ("bpf", libc::SYS_bpf),
    ("perf_event_open", libc::SYS_perf_event_open),
    ("add_key", libc::SYS_add_key),
    ("request_key", libc::SYS_request_key),
    ("keyctl", libc::SYS_keyctl),
    ("io_uring_setup", libc::SYS_io_uring_setup),
    ("io_uring_enter", libc::SYS_io_uring_enter),
    ("io_uring_register", libc::SYS_io_uring_register),
    ("unshare", libc::SYS_unshare),
    ("setns", libc::SYS_setns),
    ("kexec_load", libc::SYS_kexec_load),
    ("kexec_file_load", libc::SYS_kexec_file_load),
    ("init_module", libc::SYS_init_module),
    ("finit_module", libc::SYS_finit_module),
    ("delete_module", libc::SYS_delete_module),
    ("reboot", libc::SYS_reboot),
    ("swapon", libc::SYS_swapon),
    ("swapoff", libc::SYS_swapoff),
];

/// `ioctl` requests refused: pushing input into a terminal, and the Linux console's
/// equivalent.
const DENIED_IOCTLS: [u64; 2] = [libc::TIOCSTI, libc::TIOCLINUX];

/// On x86_64, the bit that marks a call through the x32 ABI, which passes the architecture
/// check with the same audit value; each refused call is refused under it too.
#[cfg(target_arch = "x86_64")]
const X32_BIT: i64 = 0x4000_0000;

/// The x32 numbers of `ioctl` and `ptrace`, which differ from their 64-bit ones.
#[cfg(target_arch = "x86_64")]
const X32_IOCTL: i64 = X32_BIT | 514;
#[cfg(target_arch = "x86_64")]
const X32_PTRACE: i64 = X32_BIT | 521;

/// The two compiled filters, as bubblewrap reads them: raw `sock_filter` arrays.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct FilterBytes {
    /// Refuses the dangerous calls with `EPERM`.
    pub deny: Vec<u8>,
    /// Answers `clone3` with `ENOSYS`.
    pub clone3: Vec<u8>,
}

/// Compiles both filters for this machine.
///
/// # Errors
/// [`SandboxError::Seccomp`] when the architecture is not supported or a rule is invalid.
pub(crate) fn compile() -> Result<FilterBytes, SandboxError> {
    let arch = target_arch()?;
    let deny = program(deny_rules()?, libc::EPERM, arch)?;
    let clone3 = program(clone3_rules(), libc::ENOSYS, arch)?;
    Ok(FilterBytes {
        deny: to_bytes(&deny),
        clone3: to_bytes(&clone3),
    })
}

/// The names of the system calls refused outright, for documentation and `doctor`.
pub fn denied_syscalls() -> Vec<&'static str> {
    DENIED.iter().map(|(name, _)| *name).collect()
}

/// The same policy as a Docker seccomp profile (the JSON `docker run --security-opt seccomp=`
/// reads): everything allowed but the refused calls, which get `EPERM`, and `clone3`, which
/// gets `ENOSYS`. Docker's engine compiles it with libseccomp for every ABI listed, so the
/// 32-bit and x32 entry points are covered by name.
pub(crate) fn docker_profile() -> serde_json::Value {
    let eperm = i64::from(libc::EPERM);
    let mut rules = vec![json!({
        "names": denied_syscalls(),
        "action": "SCMP_ACT_ERRNO",
        "errnoRet": eperm,
    })];
    for request in DENIED_IOCTLS {
        rules.push(json!({
            "names": ["ioctl"],
            "action": "SCMP_ACT_ERRNO",
            "errnoRet": eperm,
            "args": [{"index": 1, "value": request, "op": "SCMP_CMP_EQ"}],
        }));
    }
    let newuser = libc::CLONE_NEWUSER as u64;
    rules.push(json!({
        "names": ["clone"],
        "action": "SCMP_ACT_ERRNO",
        "errnoRet": eperm,
        "args": [{"index": 0, "value": newuser, "valueTwo": newuser, "op": "SCMP_CMP_MASKED_EQ"}],
    }));
    rules.push(json!({
        "names": ["clone3"],
        "action": "SCMP_ACT_ERRNO",
        "errnoRet": i64::from(libc::ENOSYS),
    }));
    json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": docker_architectures(),
        "syscalls": rules,
    })
}

fn docker_architectures() -> &'static [&'static str] {
    match std::env::consts::ARCH {
        "aarch64" => &["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"],
        _ => &["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
    }
}

fn target_arch() -> Result<TargetArch, SandboxError> {
    TargetArch::try_from(std::env::consts::ARCH)
        .map_err(|err| SandboxError::Seccomp(err.to_string()))
}

fn program(
    rules: BTreeMap<i64, Vec<SeccompRule>>,
    errno: i32,
    arch: TargetArch,
) -> Result<BpfProgram, SandboxError> {
    let errno = u32::try_from(errno).map_err(|err| SandboxError::Seccomp(err.to_string()))?;
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(errno),
        arch,
    )
    .map_err(|err| SandboxError::Seccomp(err.to_string()))?;
    BpfProgram::try_from(filter).map_err(|err| SandboxError::Seccomp(err.to_string()))
}

fn deny_rules() -> Result<BTreeMap<i64, Vec<SeccompRule>>, SandboxError> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for (_, nr) in DENIED {
        rules.insert(nr, Vec::new());
    }
    rules.insert(libc::SYS_ioctl, ioctl_rules()?);
    rules.insert(libc::SYS_clone, vec![clone_newuser_rule()?]);
    add_x32_aliases(&mut rules)?;
    Ok(rules)
}

fn clone3_rules() -> BTreeMap<i64, Vec<SeccompRule>> {
    BTreeMap::from([(libc::SYS_clone3, Vec::new())])
}

/// One rule per refused request; the request number is compared as the kernel reads it, 32
/// bits, so high bits set by the caller do not slip past.
fn ioctl_rules() -> Result<Vec<SeccompRule>, SandboxError> {
    DENIED_IOCTLS
        .iter()
        .map(|&request| rule(1, SeccompCmpOp::Eq, request))
        .collect()
}

/// `clone` with `CLONE_NEWUSER` among its flags (the first argument on x86_64 and aarch64).
fn clone_newuser_rule() -> Result<SeccompRule, SandboxError> {
    let flag = libc::CLONE_NEWUSER as u64;
    rule(0, SeccompCmpOp::MaskedEq(flag), flag)
}

fn rule(arg: u8, op: SeccompCmpOp, value: u64) -> Result<SeccompRule, SandboxError> {
    let condition = SeccompCondition::new(arg, SeccompCmpArgLen::Dword, op, value)
        .map_err(|err| SandboxError::Seccomp(err.to_string()))?;
    SeccompRule::new(vec![condition]).map_err(|err| SandboxError::Seccomp(err.to_string()))
}

#[cfg(target_arch = "x86_64")]
fn add_x32_aliases(rules: &mut BTreeMap<i64, Vec<SeccompRule>>) -> Result<(), SandboxError> {
    let native: Vec<(i64, Vec<SeccompRule>)> =
        rules.iter().map(|(nr, r)| (*nr, r.clone())).collect();
    for (nr, chain) in native {
        rules.insert(X32_BIT | nr, chain);
    }
    rules.insert(X32_IOCTL, ioctl_rules()?);
    rules.insert(X32_PTRACE, Vec::new());
    Ok(())
}

#[cfg(not(target_arch = "x86_64"))]
fn add_x32_aliases(_rules: &mut BTreeMap<i64, Vec<SeccompRule>>) -> Result<(), SandboxError> {
    Ok(())
}

/// The program as the kernel's `struct sock_filter` array, in this machine's byte order.
fn to_bytes(program: &[seccompiler::sock_filter]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(program.len() * 8);
    for insn in program {
        bytes.extend(insn.code.to_ne_bytes());
        bytes.push(insn.jt);
        bytes.push(insn.jf);
        bytes.extend(insn.k.to_ne_bytes());
    }
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_filters_compile_to_whole_instructions() {
        let filters = compile().expect("filters compile here");
        assert!(!filters.deny.is_empty() && filters.deny.len().is_multiple_of(8));
        assert!(!filters.clone3.is_empty() && filters.clone3.len().is_multiple_of(8));
    }

    #[test]
    fn instruction_bytes_follow_the_kernel_layout() {
        let insn = seccompiler::sock_filter {
            code: 0x0006,
            jt: 1,
            jf: 2,
            k: 0x0005_0001,
        };
        let bytes = to_bytes(&[insn]);
        let mut expected = 0x0006u16.to_ne_bytes().to_vec();
        expected.extend([1, 2]);
        expected.extend(0x0005_0001u32.to_ne_bytes());
        assert_eq!(bytes, expected);
    }
}
