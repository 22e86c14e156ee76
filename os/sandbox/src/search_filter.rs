//! A policy's rules compiled to a seccomp BPF program that finds the syscall by binary search.
//!
//! The kernel, when a filter is attached, runs it once for every syscall number to build its
//! cache of calls the filter always allows. seccompiler's programs compare the syscall number
//! with each rule in turn, so attaching one costs the number of rules times the number of
//! syscalls: 0.20 ms for the WASM host's role, against 0.01-0.02 ms for a one-instruction
//! filter, paid on every sandboxed start (decision 0103). Here the allowed numbers are sorted
//! and searched: the comparisons that find a call's rules grow with the logarithm of the
//! policy's length (12 to 18 instructions for the policies here).
//!
//! Same verdicts as seccompiler's program for the policy format's subset that the policies use
//! (allow-list, kill on mismatch, `eq` argument conditions on 32- or 64-bit values); a test
//! runs both programs on every syscall number, on other architectures, and on argument values
//! that meet each rule or miss one of its conditions.

use std::collections::BTreeMap;

use seccompiler::sock_filter;

use crate::SandboxError;

/// `BPF_LD | BPF_W | BPF_ABS`: load the 32-bit word at offset `k` of `struct seccomp_data`.
const LOAD_WORD: u16 = 0x20;
/// `BPF_JMP | BPF_JEQ | BPF_K`: jump `jt` if the loaded word equals `k`, else `jf`.
const JUMP_IF_EQUAL: u16 = 0x15;
/// `BPF_JMP | BPF_JGE | BPF_K`: jump `jt` if the loaded word is `k` or more, else `jf`.
const JUMP_IF_AT_LEAST: u16 = 0x35;
/// `BPF_JMP | BPF_JA`: jump `k` instructions forward.
const JUMP: u16 = 0x05;
/// `BPF_RET | BPF_K`: end with action `k`.
const RETURN: u16 = 0x06;

/// Offsets in `struct seccomp_data`.
const NR_OFFSET: u32 = 0;
const ARCH_OFFSET: u32 = 4;
const ARGS_OFFSET: u32 = 16;

/// `AUDIT_ARCH_X86_64`: the only architecture a filter lets through.
pub const AUDIT_ARCH_X86_64: u32 = 62 | 0x8000_0000 | 0x4000_0000;

/// The most instructions the kernel takes in one filter (`BPF_MAXINSNS`).
const MAX_INSTRUCTIONS: usize = 4096;

/// Syscalls compared one by one at a leaf of the search (below this, a comparison per call
/// costs less than splitting further).
const LEAF_SYSCALLS: usize = 4;

/// One argument condition: `args[index] == value`, on its low 32 bits (`dword`) or all 64.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgEquals {
    /// Which argument, 0 to 5.
    pub index: u8,
    /// The value compared with.
    pub value: u64,
    /// Whether the high 32 bits are compared too (`qword`).
    pub whole: bool,
}

/// One rule: the syscall is allowed when every condition holds (always, without conditions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyscallRule {
    /// The syscall's number on x86_64.
    pub number: u32,
    /// All must hold.
    pub conditions: Vec<ArgEquals>,
}

/// Compiles `rules` (named `policy` in errors): a call is allowed when any of its syscall's
/// rules holds; any other call, and any call from another architecture, kills the process.
pub fn compile(
    policy: &'static str,
    rules: &[SyscallRule],
) -> Result<Vec<sock_filter>, SandboxError> {
    let mut by_number: BTreeMap<u32, Vec<&[ArgEquals]>> = BTreeMap::new();
    for rule in rules {
        by_number
            .entry(rule.number)
            .or_default()
            .push(&rule.conditions);
    }
    let syscalls: Vec<Vec<sock_filter>> = by_number
        .iter()
        .map(|(number, alternatives)| syscall_block(policy, *number, alternatives))
        .collect::<Result<_, _>>()?;
    let numbers: Vec<u32> = by_number.keys().copied().collect();
    let mut program = vec![
        statement(LOAD_WORD, ARCH_OFFSET),
        jump(JUMP_IF_EQUAL, AUDIT_ARCH_X86_64, 1, 0),
        statement(RETURN, libc::SECCOMP_RET_KILL_PROCESS),
        statement(LOAD_WORD, NR_OFFSET),
    ];
    program.extend(search(&numbers, &syscalls));
    if program.len() > MAX_INSTRUCTIONS {
        return Err(SandboxError::PolicyRule {
            policy,
            problem: "more instructions than the kernel takes in one filter (4096)",
        });
    }
    Ok(program)
}

/// The search over `numbers` (sorted), whose blocks are `blocks`, with the syscall number
/// loaded: an inner node sends numbers from the middle one up to its right half.
fn search(numbers: &[u32], blocks: &[Vec<sock_filter>]) -> Vec<sock_filter> {
    if numbers.len() <= LEAF_SYSCALLS {
        let mut leaf: Vec<sock_filter> = blocks.iter().flatten().cloned().collect();
        leaf.push(statement(RETURN, libc::SECCOMP_RET_KILL_PROCESS));
        return leaf;
    }
    let middle = numbers.len() / 2;
    let left = search(&numbers[..middle], &blocks[..middle]);
    let right = search(&numbers[middle..], &blocks[middle..]);
    let mut node = vec![
        // At least the middle number: on to the jump over the left half.
        jump(JUMP_IF_AT_LEAST, numbers[middle], 0, 1),
        statement(JUMP, left.len() as u32),
    ];
    node.extend(left);
    node.extend(right);
    node
}

/// One syscall at a leaf: its number compared, then (on a match) its rules; on no match the
/// next syscall's comparison follows.
fn syscall_block(
    policy: &'static str,
    number: u32,
    alternatives: &[&[ArgEquals]],
) -> Result<Vec<sock_filter>, SandboxError> {
    let unconditional = alternatives
        .iter()
        .filter(|conditions| conditions.is_empty())
        .count();
    if unconditional > 0 && unconditional < alternatives.len() {
        // seccompiler drops a syscall's unconditional rule when it also has conditional ones;
        // rather than compile either reading, such a policy is refused.
        return Err(SandboxError::PolicyRule {
            policy,
            problem: "a syscall listed both with and without argument conditions",
        });
    }
    let rules: Vec<sock_filter> = if unconditional > 0 {
        vec![statement(RETURN, libc::SECCOMP_RET_ALLOW)]
    } else {
        let mut rules: Vec<sock_filter> = alternatives
            .iter()
            .map(|conditions| alternative(policy, conditions))
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .flatten()
            .collect();
        rules.push(statement(RETURN, libc::SECCOMP_RET_KILL_PROCESS));
        rules
    };
    let mut block = vec![jump(
        JUMP_IF_EQUAL,
        number,
        0,
        jump_offset(policy, rules.len())?,
    )];
    block.extend(rules);
    Ok(block)
}

/// One rule's conditions, ending in `allow`; a failing condition goes on to what follows
/// (the next rule of the syscall, or its `kill`).
fn alternative(
    policy: &'static str,
    conditions: &[ArgEquals],
) -> Result<Vec<sock_filter>, SandboxError> {
    let mut words = Vec::new();
    for condition in conditions {
        if condition.index > 5 {
            return Err(SandboxError::PolicyRule {
                policy,
                problem: "an argument index above 5",
            });
        }
        let offset = ARGS_OFFSET + 8 * u32::from(condition.index);
        // Little-endian: the low word first.
        words.push((offset, condition.value as u32));
        if condition.whole {
            words.push((offset + 4, (condition.value >> 32) as u32));
        }
    }
    // Each word is a load and a comparison; after the last, `allow`.
    let length = 2 * words.len() + 1;
    let mut program = Vec::with_capacity(length);
    for (offset, value) in words {
        program.push(statement(LOAD_WORD, offset));
        let to_next_rule = length - program.len() - 1;
        program.push(jump(
            JUMP_IF_EQUAL,
            value,
            0,
            jump_offset(policy, to_next_rule)?,
        ));
    }
    program.push(statement(RETURN, libc::SECCOMP_RET_ALLOW));
    Ok(program)
}

/// A conditional jump's offset (one byte).
fn jump_offset(policy: &'static str, offset: usize) -> Result<u8, SandboxError> {
    u8::try_from(offset).map_err(|_| SandboxError::PolicyRule {
        policy,
        problem: "a syscall's rules longer than a conditional jump reaches (255 instructions)",
    })
}

fn statement(code: u16, k: u32) -> sock_filter {
    sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u16, k: u32, jt: u8, jf: u8) -> sock_filter {
    sock_filter { code, jt, jf, k }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// `struct seccomp_data` as the filter sees it.
    #[derive(Debug, Clone, Copy)]
    pub(crate) struct Call {
        pub nr: u32,
        pub arch: u32,
        pub args: [u64; 6],
    }

    impl Call {
        fn word(&self, offset: u32) -> u32 {
            match offset {
                0 => self.nr,
                4 => self.arch,
                16..=63 if offset.is_multiple_of(4) => {
                    let arg = self.args[(offset as usize - 16) / 8];
                    if offset.is_multiple_of(8) {
                        arg as u32
                    } else {
                        (arg >> 32) as u32
                    }
                }
                _ => panic!("load of offset {offset}"),
            }
        }
    }

    /// Runs a classic BPF program (the instructions seccomp filters use here) on `call`.
    pub(crate) fn run(program: &[sock_filter], call: &Call) -> u32 {
        run_counted(program, call).0
    }

    /// [`run`], with how many instructions ran.
    fn run_counted(program: &[sock_filter], call: &Call) -> (u32, usize) {
        let mut accumulator = 0u32;
        let mut at = 0usize;
        let mut steps = 0;
        loop {
            let insn = &program[at];
            at += 1;
            steps += 1;
            match insn.code {
                LOAD_WORD => accumulator = call.word(insn.k),
                JUMP => at += insn.k as usize,
                RETURN => return (insn.k, steps),
                code @ (JUMP_IF_EQUAL | JUMP_IF_AT_LEAST | 0x25 | 0x45) => {
                    let taken = match code {
                        JUMP_IF_EQUAL => accumulator == insn.k,
                        JUMP_IF_AT_LEAST => accumulator >= insn.k,
                        0x25 => accumulator > insn.k,
                        _ => accumulator & insn.k != 0,
                    };
                    at += usize::from(if taken { insn.jt } else { insn.jf });
                }
                code => panic!("instruction {code:#x} at {}", at - 1),
            }
        }
    }

    fn rule(number: u32, conditions: &[(u8, u64, bool)]) -> SyscallRule {
        SyscallRule {
            number,
            conditions: conditions
                .iter()
                .map(|&(index, value, whole)| ArgEquals {
                    index,
                    value,
                    whole,
                })
                .collect(),
        }
    }

    fn call(nr: u32, args: [u64; 6]) -> Call {
        Call {
            nr,
            arch: AUDIT_ARCH_X86_64,
            args,
        }
    }

    const ALLOW: u32 = libc::SECCOMP_RET_ALLOW;
    const KILL: u32 = libc::SECCOMP_RET_KILL_PROCESS;

    #[test]
    fn allows_exactly_the_listed_calls_and_conditions() {
        let rules: Vec<SyscallRule> = (0..40)
            .map(|n| rule(n * 3, &[]))
            .chain([
                rule(157, &[(0, 15, false)]),
                rule(157, &[(0, 38, false)]),
                rule(317, &[(0, 1, false), (2, 0x1_0000_0007, true)]),
            ])
            .collect();
        let program = compile("test", &rules).unwrap();
        for nr in 0..400 {
            let listed = nr % 3 == 0 && nr < 120;
            let expected = if listed { ALLOW } else { KILL };
            assert_eq!(run(&program, &call(nr, [0; 6])), expected, "nr {nr}");
        }
        let prctl = |option| run(&program, &call(157, [option, 0, 0, 0, 0, 0]));
        assert_eq!(prctl(15), ALLOW);
        assert_eq!(prctl(38), ALLOW);
        assert_eq!(
            prctl(15 | 1 << 32),
            ALLOW,
            "dword: the high half is not compared"
        );
        assert_eq!(prctl(16), KILL);
        let seccomp = |a0, a2| run(&program, &call(317, [a0, 0, a2, 0, 0, 0]));
        assert_eq!(seccomp(1, 0x1_0000_0007), ALLOW);
        assert_eq!(seccomp(1, 0x7), KILL, "qword: the high half is compared");
        assert_eq!(seccomp(0, 0x1_0000_0007), KILL);
        let other_arch = Call {
            arch: 0x4000_0003,
            ..call(0, [0; 6])
        };
        assert_eq!(run(&program, &other_arch), KILL);
        assert_eq!(run(&program, &call(0x4000_0000, [0; 6])), KILL, "x32");
        assert_eq!(run(&program, &call(u32::MAX, [0; 6])), KILL);
    }

    #[test]
    fn the_search_stays_short_for_a_long_policy() {
        let rules: Vec<SyscallRule> = (0..120).map(|n| rule(n * 2, &[])).collect();
        let program = compile("test", &rules).unwrap();
        // Instructions run for any number, listed or not: the arch check and the number's load
        // (3), five levels of search (120, 60, 30, 15, 7 or 8 numbers: at most 2 each) and a
        // leaf of at most 4 comparisons and a return (5).
        let longest = (0..300u32)
            .map(|nr| run_counted(&program, &call(nr, [0; 6])).1)
            .max()
            .unwrap();
        assert!(longest <= 18, "{longest} instructions for one call");
    }

    #[test]
    fn an_argument_index_beyond_five_is_refused() {
        let err = compile("test", &[rule(1, &[(6, 0, false)])]).unwrap_err();
        assert!(err.to_string().contains("test"), "{err}");
    }

    #[test]
    fn a_program_longer_than_the_kernel_takes_is_refused() {
        // Two instructions per allowed number: 2,100 numbers need more than 4,096.
        let rules: Vec<SyscallRule> = (0..2100).map(|n| rule(n, &[])).collect();
        let err = compile("test", &rules).unwrap_err();
        assert!(err.to_string().contains("4096"), "{err}");
        let fits: Vec<SyscallRule> = (0..1000).map(|n| rule(n, &[])).collect();
        assert!(compile("test", &fits).unwrap().len() <= MAX_INSTRUCTIONS);
    }
}
