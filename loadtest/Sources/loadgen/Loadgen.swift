import LoadHarness

/// Thin entry point: everything `loadgen` does lives in the LoadHarness library, where the tests reach it.
@main
extension LoadgenCommand {}
