/** What Jenkins throws into a build that is aborted: an InterruptedException. */
class FlowInterruptedException extends InterruptedException {

    FlowInterruptedException(String message) {
        super(message)
    }

}
