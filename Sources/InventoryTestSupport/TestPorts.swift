import Foundation
import Synchronization

/// Ports for the servers tests and the fault suite start themselves.
public enum TestPorts {
    private static let given = Mutex<Set<Int>>([])

    /// A TCP port nothing listens on right now, below the kernel's range of ephemeral ports: a port the kernel hands
    /// out (bind to port 0) may be handed out again as the local port of an outgoing connection before the server
    /// that is to listen on it has started (a redis-server then failed to bind, and its start waited 60 s in vain).
    /// Drawn at random from 20,000 (above the fixed ports of scripts/ and loadtest/ and their clusters' bus ports,
    /// 1xxxx) up to `below` (the ephemeral range's start, at most 32,768), and bound once to check it is free. A port
    /// is not handed out twice in one process (two tests drawing the same one before either server binds it).
    public static func free(below: Int? = nil) throws -> Int {
        let limit = max(below ?? ephemeralStart, 21_000)
        for _ in 0..<500 {
            let port = Int.random(in: 20_000..<limit)
            guard given.withLock({ $0.insert(port).inserted }) else { continue }
            if canBind(port) { return port }
        }
        throw TLSTestServers.TLSTestError(description: "cannot find a free port between 20000 and \(limit)")
    }

    /// The first port of the kernel's ephemeral range (`/proc/sys/net/ipv4/ip_local_port_range`), at most 32,768.
    public static var ephemeralStart: Int {
        let range = (try? String(contentsOfFile: "/proc/sys/net/ipv4/ip_local_port_range", encoding: .utf8)) ?? ""
        let low = range.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" }).first.flatMap { Int($0) } ?? 32_768
        return max(min(low, 32_768), 31_000)
    }

    /// Whether a TCP socket can bind 127.0.0.1:`port` now.
    public static func canBind(_ port: Int) -> Bool {
        let socket = Foundation.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(socket) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = UInt16(port).bigEndian
        return withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(socket, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        } == 0
    }
}
