@testable import CofferAgent
import CofferPluginProtocol
import CofferVault
import XCTest

/// The agent lends a restore's reader its shared slots (decision 022): only for what a slot
/// holds and would not go inline, never the last free one, and never by waiting.
final class SlotLenderTests: XCTestCase {
    func testLendsWhatIsFreeKeepsOneAndTakesBackReleasedSlots() throws {
        let (sender, memoryFD, peer) = try SharedSlots.create(count: 3)
        let receiver = try SharedSlots.attach(count: 3, memory: memoryFD, socket: peer)
        let lender = SlotLender(sender)
        XCTAssertNil(lender.borrow(FrameWriter.inlineLimit), "small enough to go inline")
        XCTAssertNil(lender.borrow(SharedSlots.slotSize + 1), "more than a slot")

        let a = try XCTUnwrap(lender.borrow(SharedSlots.slotSize))
        let b = try XCTUnwrap(lender.borrow(FrameWriter.inlineLimit + 1))
        XCTAssertNotEqual(a.token, b.token)
        XCTAssertEqual(a.memory.count, SharedSlots.slotSize)
        XCTAssertNil(lender.borrow(SharedSlots.slotSize), "the last slot is kept for data not lent")

        // A loan given back can be lent again; loans sent count no more against the limit.
        lender.giveBack(a)
        let c = try XCTUnwrap(lender.borrow(SharedSlots.slotSize))
        XCTAssertEqual(c.token, a.token)
        lender.sent(b)
        lender.sent(c)
        let d = try XCTUnwrap(lender.borrow(SharedSlots.slotSize), "the slot kept back is free")
        XCTAssertNil(lender.borrow(SharedSlots.slotSize), "the others are with the receiver: no wait, no loan")

        // Once the receiver is done with one, it is lent again without waiting.
        try receiver.release(b.token)
        let e = try XCTUnwrap(lender.borrow(SharedSlots.slotSize))
        XCTAssertEqual(e.token, b.token)
        XCTAssertEqual(Set([c.token, d.token, e.token]).count, 3)
    }
}
