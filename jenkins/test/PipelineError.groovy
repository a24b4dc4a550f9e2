/** What `error` throws, as Jenkins' AbortException. */
class PipelineError extends RuntimeException {

    PipelineError(String message) {
        super(message)
    }

}
