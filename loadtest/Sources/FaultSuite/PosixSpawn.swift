import Foundation

/// Starts programs with `posix_spawn` instead of Foundation's `Process`: on Linux, `Process.run()` now and then
/// crashes the harness itself (SIGSEGV in a memcpy: it copies whole 256-byte `d_name` fields while listing
/// /proc/self/fd, reading past glibc's buffer; swift-corelibs-foundation#5472). The model check starts a process
/// thousands of times in a long run, and crashed so after 51,000 steps.
enum PosixSpawn {
    /// Starts `executable` with `arguments` and the environment (this process's, with `environment` over it); its
    /// standard input is /dev/null, its output and errors go to `output` (a file descriptor, -1 for /dev/null).
    static func spawn(_ executable: String, _ arguments: [String], environment: [String: String], output: Int32) throws -> pid_t {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        if output >= 0 {
            posix_spawn_file_actions_adddup2(&actions, output, 1)
            posix_spawn_file_actions_adddup2(&actions, output, 2)
        } else {
            posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
            posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
        }
        // Nothing else of this process goes to the child: a descriptor without close-on-exec (a listening socket of a
        // test's server, a Redis connection) would live on in it, and the port would still accept after its owner
        // closed it.
        closeFrom3(&actions)
        let merged = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        let envp = merged.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            for pointer in argv { free(pointer) }
            for pointer in envp { free(pointer) }
        }
        // Signals as a fresh process has them (as Foundation's Process set them): no signal blocked, none ignored,
        // whatever the spawning thread had.
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var none = sigset_t()
        sigemptyset(&none)
        posix_spawnattr_setsigmask(&attributes, &none)
        var all = sigset_t()
        sigfillset(&all)
        posix_spawnattr_setsigdefault(&attributes, &all)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        var pid: pid_t = 0
        let result = posix_spawn(&pid, executable, &actions, &attributes, argv, envp)
        guard result == 0 else {
            throw FaultSuiteError("cannot start \(executable): \(String(cString: strerror(result)))")
        }
        return pid
    }

    private typealias CloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32

    /// glibc's `posix_spawn_file_actions_addclosefrom_np` (2.34), which Swift's Glibc module does not import.
    nonisolated(unsafe) private static let closeFrom: CloseFrom? = dlsym(nil, "posix_spawn_file_actions_addclosefrom_np")
        .map { unsafeBitCast($0, to: CloseFrom.self) }

    /// Closes every descriptor from 3 up in the child: all at once where glibc can, else each one open now.
    private static func closeFrom3(_ actions: inout posix_spawn_file_actions_t) {
        if let closeFrom, closeFrom(&actions, 3) == 0 { return }
        let open = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? []
        for fd in open.compactMap({ Int32($0) }) where fd > 2 {
            posix_spawn_file_actions_addclose(&actions, fd)
        }
    }

    /// The exit status of `pid` (its exit code, or the signal that ended it) once it has ended, nil while it runs.
    /// Reaps it: ask once it has ended, then not again.
    static func exitStatus(_ pid: pid_t, wait: Bool = false) -> Int32? {
        var status: Int32 = 0
        var result: pid_t
        repeat { result = waitpid(pid, &status, wait ? 0 : WNOHANG) } while result == -1 && errno == EINTR
        guard result == pid else { return result == -1 ? -1 : nil }
        // WIFEXITED / WEXITSTATUS / WTERMSIG are macros Swift does not import.
        return status & 0x7f == 0 ? (status >> 8) & 0xff : status & 0x7f
    }
}
