/* groovylint-disable JavaIoPackageAccess, UnnecessaryObjectReferences */
import groovy.transform.CompileDynamic

/**
 * Runs the shared library's vars/ scripts outside Jenkins: the pipeline steps they use
 * (httpRequest, withCredentials, string, sh, libraryResource, podTemplate, node,
 * container, stage, echo, error, env) are provided here. httpRequest makes real HTTP
 * calls and sh runs the real shell, so the library talks to a real service.
 */
@CompileDynamic
class PipelineHarness {

    private static final String UTF8 = 'UTF-8'
    private static final String STRING = 'string'

    Map<String, Object> env = [:]
    Map<String, String> credentials = [:]
    Map<String, String> shellEnv = [:]
    List<String> log = []
    List<Map> pods = []
    List<String> nodes = []
    List<String> containers = []
    List<String> stages = []
    List<Map> requests = []
    /** HTTP calls and node requests in the order they were made. */
    List<String> trace = []
    /** The build is aborted while httpRequest runs. */
    boolean abortDuringHttp = false
    File libraryRoot

    PipelineHarness(File libraryRoot) {
        this.libraryRoot = libraryRoot
    }

    /** Loads vars/NAME.groovy with the steps bound. */
    Script load(String name) {
        Binding binding = new Binding()
        binding.setVariable('env', env)
        binding.setVariable('echo') { Object message -> log << message.toString() }
        binding.setVariable('error') { Object message -> throw new PipelineError(message.toString()) }
        binding.setVariable(STRING) { Map args -> [binding: STRING] + args }
        binding.setVariable('withCredentials') { List bindings, Closure body ->
            List<String> bound = []
            bindings.each { Map b ->
                if (!credentials.containsKey(b.credentialsId)) {
                    throw new PipelineError("Could not find credentials entry with ID '${b.credentialsId}'")
                }
                env[b.variable] = credentials[b.credentialsId]
                bound << b.variable
            }
            try {
                return body.call()
            } finally {
                bound.each { String v -> env.remove(v) }
            }
        }
        binding.setVariable('httpRequest') { Map args -> httpRequest(args) }
        binding.setVariable('sh') { Map args -> shell(args) }
        binding.setVariable('libraryResource') { String path ->
            new File(libraryRoot, "resources/${path}").getText(UTF8)
        }
        binding.setVariable('podTemplate') { Map args, Closure body ->
            pods << args
            env.POD_LABEL = "autopilot-test-${pods.size()}"
            try {
                return body.call()
            } finally {
                env.remove('POD_LABEL')
            }
        }
        binding.setVariable('node') { String label, Closure body ->
            nodes << label
            trace << "node ${label}".toString()
            body.call()
        }
        binding.setVariable('container') { String containerName, Closure body ->
            containers << containerName
            body.call()
        }
        binding.setVariable('stage') { String stageName, Closure body ->
            stages << stageName
            body.call()
        }
        binding.setVariable('steps', new Steps(binding))
        GroovyShell shell = new GroovyShell(PipelineHarness.classLoader, binding)
        return shell.parse(new File(libraryRoot, "vars/${name}.groovy"))
    }

    /** The HTTP Request plugin's step: real HTTP; the response has status and content. */
    Map httpRequest(Map args) {
        requests << args
        String method = args.httpMode ?: 'GET'
        trace << "${method} ${args.url}".toString()
        if (abortDuringHttp) {
            throw new FlowInterruptedException('the build was aborted')
        }
        HttpURLConnection c = (HttpURLConnection) new URL(args.url).openConnection()
        c.requestMethod = method
        int timeoutMs = ((args.timeout ?: 10) as int) * 1000
        c.connectTimeout = timeoutMs
        c.readTimeout = timeoutMs
        (args.customHeaders ?: []).each { Map h -> c.setRequestProperty(h.name, h.value.toString()) }
        if (args.contentType == 'APPLICATION_JSON') {
            c.setRequestProperty('Content-Type', 'application/json')
        }
        if (args.requestBody != null) {
            c.doOutput = true
            c.outputStream.withWriter(UTF8) { Writer w -> w << args.requestBody }
        }
        int status = c.responseCode
        InputStream stream = status >= 400 ? c.errorStream : c.inputStream
        String content = stream ? stream.getText(UTF8) : ''
        String codes = args.validResponseCodes ?: '100:399'
        List<Integer> range = codes.split(':').collect { String v -> v as int }
        if (status < range[0] || status > range[-1]) {
            throw new PipelineError("Fail: the returned code ${status} is not in the accepted range: ${codes}")
        }
        return [status: status, content: content]
    }

    /** The sh step: the real shell, with shellEnv added to the environment. */
    Object shell(Map args) {
        List<String> command = ['/bin/sh', '-c', args.script]
        ProcessBuilder pb = new ProcessBuilder(command)
        pb.environment().putAll(shellEnv)
        Process p = pb.start()
        StringBuilder out = new StringBuilder()
        StringBuilder err = new StringBuilder()
        p.waitForProcessOutput(out, err)
        int exit = p.exitValue()
        if (exit) {
            throw new PipelineError("script returned exit code ${exit}: ${err}")
        }
        return args.returnStdout ? out.toString() : null
    }

}
