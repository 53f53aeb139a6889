import RedisClient

// Redis Cluster: an order's directory, the hash in the order's own shard where its state is decided before its
// parts follow (lua/dir_*.lua). Its keys: the directory and its shard's index of reserves under way.

extension KeyLayout {
    /// The keys every directory script starts with: the order's directory and its shard's index of reserves under way.
    func directoryKeys(_ orderId: String) -> [String] {
        [directory(orderId), pendingIndex(forOrder: orderId)]
    }
}

/// lua/dir_open.lua: a reserve opens the order's directory before it holds stock in the order's parts.
struct DirOpenCall: ScriptCall {
    static let name = ScriptName.dirOpen

    enum Reply: Sendable, Equatable {
        /// Opened by this request (state `reserved` for one part, `reserving` for several until dir_commit).
        case opened
        /// Opened before by the same request.
        case same
        /// Opened by another request of the same orderId.
        case conflict
        /// Cancelled or expired first.
        case closed(ReservationStatus)
        /// No directory, and Redis may have lost it: as reserve.lua's `ask`.
        case askJournal(markerMissing: Bool)
    }

    let keys: [String]
    let arguments: [String]
    /// Its shard's drain mark, checked first (lua/lib/floor.lua).
    let drainMark: String?

    /// `deadlineMilliseconds`: how long a reserve of several parts may take (nil for one part).
    init(
        orderId: String, fingerprint: String, bizId: String, shards: [Int], ttlSeconds: Int, deadlineMilliseconds: Int64?,
        journalAsked: Bool, layout: KeyLayout
    ) {
        keys = layout.directoryKeys(orderId) + [layout.generation(shard: layout.shard(of: orderId))]
        drainMark = layout.drainMark(shard: layout.shard(of: orderId))
        arguments = [
            fingerprint, bizId, shards.map(String.init).joined(separator: ","), String(ttlSeconds), orderId,
            deadlineMilliseconds.map(String.init) ?? "", journalAsked.scriptFlag,
        ]
    }

    static func decode(_ value: RedisValue) throws -> Reply {
        let reply = ScriptReply(value)
        switch reply.tag {
        case "new": return .opened
        case "same": return .same
        case "conflict": return .conflict
        case "closed": return .closed(reply.status(1) ?? .cancelled)
        case "ask": return .askJournal(markerMissing: reply.text(1) == "marker")
        default: throw unexpected(value)
        }
    }
}

/// lua/dir_commit.lua: every part of a reserve of several parts is held: the order is reserved.
struct DirCommitCall: ScriptCall {
    static let name = ScriptName.dirCommit

    enum Reply: Sendable, Equatable {
        /// Reserved now, or before.
        case reserved
        /// Confirmed or refunded since: a replay (a part held now is not the order's).
        case decided(ReservationStatus)
        /// Decided otherwise meanwhile (`cancelled`, `expired`), or gone ("").
        case state(String)
    }

    let keys: [String]
    let arguments: [String]
    /// Its shard's drain mark, checked first (lua/lib/floor.lua).
    let drainMark: String?

    init(orderId: String, layout: KeyLayout) {
        keys = layout.directoryKeys(orderId)
        drainMark = layout.drainMark(shard: layout.shard(of: orderId))
        arguments = [orderId]
    }

    static func decode(_ value: RedisValue) throws -> Reply {
        let reply = ScriptReply(value)
        switch reply.tag {
        case "ok": return .reserved
        case "decided":
            guard let status = reply.status(1) else { return .state(reply.text(1)) }
            return .decided(status)
        case "state": return .state(reply.text(1))
        default: throw unexpected(value)
        }
    }
}

/// lua/dir_close.lua: a reserve that held nothing in the end removes the directory it opened, unless the order was
/// decided meanwhile.
struct DirCloseCall: ScriptCall {
    static let name = ScriptName.dirClose

    let keys: [String]
    let arguments: [String]
    /// Its shard's drain mark, checked first (lua/lib/floor.lua).
    let drainMark: String?

    init(orderId: String, fingerprint: String, layout: KeyLayout) {
        keys = layout.directoryKeys(orderId)
        drainMark = layout.drainMark(shard: layout.shard(of: orderId))
        arguments = [fingerprint, orderId]
    }

    /// Whether the directory was removed.
    static func decode(_ value: RedisValue) throws -> Bool {
        guard let removed = value.int else { throw unexpected(value) }
        return removed == 1
    }
}

/// lua/dir_transition.lua: decides an order's next state in its directory (its parts follow), or records a
/// directory that is missing (a cancel of an unknown order, an order restored from the journal).
struct DirTransitionCall: ScriptCall {
    static let name = ScriptName.dirTransition

    enum Reply: Sendable, Equatable {
        /// Changed now.
        case changed
        /// Already in that state (its parts follow again).
        case same
        /// In another state it may not leave for this one (`reserving`, or a reservation status).
        case state(String)
        /// There was none: recorded in the new state; `eventId` is the tombstone's outbox event ("" for none).
        case created(eventId: String)
        /// There is none, and none was to be recorded.
        case absent
    }

    let keys: [String]
    let arguments: [String]
    /// Its shard's drain mark, checked first (lua/lib/floor.lua).
    let drainMark: String?

    /// `from`: the states the directory may leave (reservation statuses, and `reserving`). `recordingSeconds`: the
    /// TTL of a directory to record when there is none (nil: change an existing one only), with its parts' `shards`,
    /// `bizId` and `request` fingerprint. `tombstone`: a directory recorded cancelled writes its cancel event to the
    /// outbox of the order's shard in the same step.
    init(
        orderId: String, to: String, from: [String], recordingSeconds: Int?, shards: [Int] = [], bizId: String = "",
        tombstone: Bool = false, request: String = "", layout: KeyLayout
    ) {
        drainMark = layout.drainMark(shard: layout.shard(of: orderId))
        keys = layout.directoryKeys(orderId) + (tombstone ? [layout.outbox(shard: layout.shard(of: orderId))] : [])
        arguments = [
            to, from.joined(separator: "|"), recordingSeconds.map(String.init) ?? "",
            shards.map(String.init).joined(separator: ","), bizId, orderId, tombstone.scriptFlag, request,
        ]
    }

    static func decode(_ value: RedisValue) throws -> Reply {
        let reply = ScriptReply(value)
        switch reply.tag {
        case "ok": return .changed
        case "same": return .same
        case "state": return .state(reply.text(1))
        case "created": return .created(eventId: reply.text(1))
        case "none": return .absent
        default: throw unexpected(value)
        }
    }
}
