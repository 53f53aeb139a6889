import Foundation
import NIOCore
import Testing

import Inventory
import InventorySettings
@testable import InventoryAPI

/// A reserve body read without JSONDecoder (`PlainJSON`) must be exactly the body JSONDecoder reads, problems
/// included; whatever the plain reading does not take goes to JSONDecoder.
@Suite("Plain JSON reading of the reserve body")
struct PlainJSONTests {
    let limits = InputLimits()

    /// JSONDecoder's reading, as `Routes.decode` does it; nil when it throws (a 400).
    func decoded(_ text: String) -> ReserveBody? {
        let decoder = JSONDecoder()
        decoder.userInfo[.inputLimits] = limits
        return try? decoder.decode(ReserveBody.self, from: Data(text.utf8))
    }

    func plain(_ text: String) -> ReserveBody? {
        PlainJSON.parse(ByteBuffer(string: text)).flatMap { ReserveBody(plain: $0, limits: limits) }
    }

    @Test("bodies of the plain subset, valid or not, read the same as JSONDecoder reads them", arguments: [
        #"{"orderId":"o-1","items":[{"skuId":1,"quantity":1}]}"#,
        #" { "orderId" : "o-1" , "items" : [ { "skuId" : 1 , "quantity" : 2 } ] }"# + "\n",
        #"{"orderId":"o-2","bizId":"shop-7","userId":"u1","ttlSeconds":60,"shortage":"partial","dispense":true,"items":[{"skuId":3,"quantity":2,"codes":["A-1","B-2"]},{"skuId":9,"quantity":1}]}"#,
        #"{"orderId":"o-3","items":[{"skuId":1,"quantity":1}],"unknown":{"nested":[1,true,"x"]}}"#,
        // Valid JSON whose values break the rules: the same problems, in the same order.
        #"{"orderId":"bad id!","items":[]}"#,
        #"{"items":[{"skuId":0,"quantity":0},{"skuId":0,"quantity":1000001}],"ttlSeconds":0,"shortage":"some"}"#,
        #"{"orderId":"o-4","items":[{"skuId":5,"quantity":2,"codes":["A","A"]},{"skuId":5}]}"#,
        #"{"orderId":"o-5","userId":"","bizId":"BAD BIZ","items":[{"skuId":9223372036854775808,"quantity":1}]}"#,
        #"{}"#,
        // Every JSON space between tokens, the largest numbers each field's type takes, an empty key, unknown fields
        // in an item, and nesting as deep as the plain reading goes (maxDepth levels).
        "{\t\"orderId\"\r\n:\"o-6\",\"items\":[{\"skuId\":18446744073709551615,\"quantity\":9223372036854775807}]}",
        #"{"orderId":"o-7","ttlSeconds":9223372036854775807,"items":[{"skuId":9223372036854775807,"quantity":1,"x":[]}],"":1}"#,
        #"{"orderId":"o-8","items":[{"skuId":1,"quantity":1}],"deep":[[[[[[1]]]]]]}"#,
    ])
    func sameReading(body: String) throws {
        let fromPlain = try #require(plain(body), "the plain reading takes this body")
        #expect(fromPlain == decoded(body))
    }

    @Test("a problem the plain reading does not report itself sends the body to JSONDecoder", arguments: [
        #"{"orderId":null,"items":[{"skuId":1,"quantity":1}]}"#,  // null
        #"{"orderId":"o","items":[{"skuId":1.0,"quantity":1}]}"#,  // a fraction
        #"{"orderId":"o","items":[{"skuId":1,"quantity":1e2}]}"#,  // an exponent
        #"{"orderId":"o","items":[{"skuId":1,"quantity":-1}]}"#,  // negative
        #"{"orderId":"o\u0041","items":[{"skuId":1,"quantity":1}]}"#,  // an escape
        #"{"orderId":"ö","items":[{"skuId":1,"quantity":1}]}"#,  // not ASCII
        #"{"orderId":"o","orderId":"p","items":[{"skuId":1,"quantity":1}]}"#,  // a key twice
        #"{"orderId":"o","items":[{"skuId":1,"quantity":1},]}"#,  // a trailing comma (swift-foundation takes it)
        #"{"orderId":"o","items":[{"skuId":01,"quantity":1}]}"#,  // a leading zero (invalid JSON)
        #"{"orderId":5,"items":[{"skuId":1,"quantity":1}]}"#,  // a number for a string
        #"{"orderId":"o","items":[1,2]}"#,  // elements that are not objects
        #"{"orderId":"o","items":[{"skuId":1,"quantity":9223372036854775808}]}"#,  // past Int64
        #"{"orderId":"o","items":[{"skuId":1,"quantity":18446744073709551616}]}"#,  // past UInt64
        #"{"orderId":"o","dispense":"yes","items":[{"skuId":1,"quantity":1}]}"#,  // a string for a boolean
        #"{"orderId":"o","items":[{"skuId":1,"quantity":1}]} x"#,  // text after the body
        #"[{"orderId":"o"}]"#,  // not an object
        #"{"a":[[[[[[[1]]]]]]],"orderId":"o","items":[{"skuId":1,"quantity":1}]}"#,  // one level deeper than maxDepth
        "{\"orderId\":\"o\u{7F}\",\"items\":[{\"skuId\":1,\"quantity\":1}]}",  // DEL in a string
        "{\"orderId\":\"o\tp\",\"items\":[{\"skuId\":1,\"quantity\":1}]}",  // a raw tab in a string
        #"{"orderId":"o","items":[{"skuId":1,"quantity":1,"codes":[1]}]}"#,  // a code that is not a string
        #"{"orderId":"o","items":[{"skuId":1,"skuId":2,"quantity":1}]}"#,  // a key twice in an item
        "\u{FEFF}{\"orderId\":\"o\",\"items\":[{\"skuId\":1,\"quantity\":1}]}",  // a byte order mark
        #"{"orderId":"o","items":[{"skuId":1,"quantity":1}]"#,  // cut short
    ])
    func leftToJSONDecoder(body: String) {
        #expect(plain(body) == nil)
    }

    /// Seeded mutations of valid bodies (bytes replaced, dropped, doubled): whenever the plain reading takes one, it
    /// reads what JSONDecoder reads; a body JSONDecoder refuses (a 400) is never taken.
    @Test("mutated bodies: the plain reading never differs from JSONDecoder")
    func mutations() {
        let seeds = [
            #"{"orderId":"o-1","userId":"u","items":[{"skuId":12,"quantity":3,"codes":["A","B","C"]},{"skuId":4,"quantity":1}],"ttlSeconds":30,"dispense":false,"shortage":"reject"}"#,
            #"{ "orderId": "x", "items": [ {"skuId": 1, "quantity": 10} ], "bizId": "b" }"#,
        ]
        let alphabet = Array(#"{}[],:" 0123456789-.eatrufnl\AZaz_"#.utf8) + [0x09, 0x0A, 0x0D, 0x7F, 0x00, 0xC3]
        var generator = SeededGenerator(seed: 0x5EED_0001)
        var taken = 0
        var mismatches: [String] = []
        for round in 0..<20_000 {
            var bytes = Array(seeds[round % seeds.count].utf8)
            for _ in 0...Int.random(in: 0..<3, using: &generator) {
                let at = Int.random(in: 0..<bytes.count, using: &generator)
                switch Int.random(in: 0..<3, using: &generator) {
                case 0: bytes[at] = alphabet.randomElement(using: &generator)!
                case 1: bytes.remove(at: at)
                default: bytes.insert(bytes[at], at: at)
                }
                if bytes.isEmpty { break }
            }
            let text = String(decoding: bytes, as: UTF8.self)
            guard let fromPlain = plain(text) else { continue }
            taken += 1
            if fromPlain != decoded(text) { mismatches.append(text) }
        }
        #expect(mismatches.isEmpty, "first: \(mismatches.first ?? "")")
        // The property is about something: many mutants are still plain bodies.
        #expect(taken > 1_000)
    }
}
