/*
 * The shared library against a live jenkins-autopilot service, in the real Groovy runtime
 * with the pipeline steps of PipelineHarness. Run by the Rust test
 * tests/api/shared_library.rs, which starts the service and sets:
 *   AUTOPILOT_TEST_URL     the service
 *   AUTOPILOT_TEST_TOKEN   a token with profiles:read and builds:write
 *   AUTOPILOT_TEST_LIB     the library's root (jenkins/)
 */
/* groovylint-disable CatchThrowable, JavaIoPackageAccess, SystemExit */
import io.jenkinsautopilot.Api

String url = System.getenv('AUTOPILOT_TEST_URL')
String token = System.getenv('AUTOPILOT_TEST_TOKEN')
File root = new File(System.getenv('AUTOPILOT_TEST_LIB'))
assert url && token && root.isDirectory() : 'run through tests/api/shared_library.rs'

/** A harness set up as a Jenkins controller would be: global env and the credential. */
PipelineHarness harness(String serviceUrl, String job, int number) {
    PipelineHarness h = new PipelineHarness(new File(System.getenv('AUTOPILOT_TEST_LIB')))
    h.env.AUTOPILOT_URL = serviceUrl
    h.env.AUTOPILOT_CONTROLLER = 'prod'
    h.env.JOB_NAME = job
    h.env.BUILD_NUMBER = number.toString()
    h.credentials['jenkins-autopilot-token'] = System.getenv('AUTOPILOT_TEST_TOKEN')
    h.shellEnv.AUTOPILOT_CGROUP_DIR = new File(h.libraryRoot, 'test/fixtures/cgroup').path
    h.shellEnv.AUTOPILOT_ELAPSED_MS = '100000'
    return h
}

Map tests = [:]

tests['Api builds URLs with folders and query values encoded'] = {
    assert Api.jobPath('team/my app') == 'team/my%20app'
    assert Api.url('http://s:8080/', '/x', [a: 'b c', skip: null]) == 'http://s:8080/x?a=b%20c'
    assert Api.performanceUrl('http://s', 'prod', 'team/app', 7) ==
        'http://s/api/v1/builds/prod/team/app/7/performance'
    assert Api.selectUrl('http://s', [job: 'a/b', type: 'test', load: 10]) ==
        'http://s/api/v1/profiles/select?job=a%2Fb&type=test&load=10'
}

tests['Api reads cgroup-usage.sh output and names what is missing'] = {
    Map u = Api.parseUsage('=== cpu.stat\nusage_usec 5\n=== memory.peak\n42\n=== elapsed_ms\n1000\n')
    assert u.cgroup['cpu.stat'] == 'usage_usec 5\n'
    assert u.cgroup['memory.peak'] == '42\n'
    assert u.elapsed_ms == 1000L
    assert Api.missing(u) == null
    assert Api.missing(Api.parseUsage('=== cpu.stat\nusage_usec 5\n=== elapsed_ms\n1\n')).contains('memory.peak')
    assert Api.missing(Api.parseUsage('=== cpu.stat\nx\n=== memory.peak\n1\n')).contains('running time')
}

tests['the real cgroup-usage.sh reads the files it is pointed at'] = {
    PipelineHarness h = harness(url, 'x', 1)
    String script = new File(root, 'resources/io/jenkinsautopilot/cgroup-usage.sh').text
    String out = h.shell([script: script, returnStdout: true])
    Map u = Api.parseUsage(out)
    assert u.cgroup['cpu.stat'].contains('usage_usec 25000000')
    assert u.cgroup['memory.peak'].trim() == '314572800'
    assert u.cgroup['memory.events'].contains('oom_kill 0')
    assert u.elapsed_ms == 100000L
    // Without the override the running time comes from PID 1 and /proc/uptime.
    h.shellEnv.remove('AUTOPILOT_ELAPSED_MS')
    Map live = Api.parseUsage(h.shell([script: script, returnStdout: true]))
    assert live.elapsed_ms > 0
}

tests['profile() asks the service with the credential and returns its answer'] = {
    PipelineHarness h = harness(url, 'groovy/rules', 1)
    Script autopilot = h.load('autopilot')
    Map p = autopilot.profile(type: 'test', load: 10)
    assert p.profile == 'light'
    assert p.source == 'rule'
    assert p.requests == [cpu: '100m', memory: '256Mi']
    assert p.pod_yaml.contains('kind: Pod')
    assert p.container == 'build'
    assert h.log.any { String l -> l.contains('test build gets light (rule)') }
    Map sent = h.requests[0]
    assert sent.customHeaders[0].value == "Bearer ${token}".toString()
    assert sent.customHeaders[0].maskValue == true
    assert sent.url.contains('controller=prod') && sent.url.contains('job=groovy%2Frules')
    assert !h.env.containsKey('AUTOPILOT_TOKEN') : 'the token is bound only inside withCredentials'
    assert autopilot.profile(type: 'deploy').profile == 'intensive'
}

tests['podTemplate() runs the body in the sized pod and reports the usage afterwards'] = {
    PipelineHarness h = harness(url, 'groovy/app', 1)
    Script autopilot = h.load('autopilot')
    Object result = autopilot.podTemplate(type: 'build', load: 80, image: 'maven:3.9') { Map p ->
        autopilot.stage('Compile') {
            h.shell([script: 'true'])
        }
        return p.profile
    }
    assert result == 'heavy'
    assert h.pods.size() == 1
    assert h.pods[0].yaml.contains('image: maven:3.9')
    assert h.pods[0].yaml.contains('memory: 1Gi')
    assert h.nodes == ['autopilot-test-1']
    assert h.containers == ['build']
    assert h.stages == ['Compile']
    Map post = h.requests.find { Map r -> r.httpMode == 'POST' }
    assert post.url == "${url}/api/v1/builds/prod/groovy/app/1/performance".toString()
    Map body = Api.parseJson(post.requestBody)
    assert body.type == 'build'
    assert body.profile == 'heavy'
    assert body.requests == [cpu: '1', memory: '1Gi']
    assert body.elapsed_ms == 100000
    assert body.stages*.name == ['Compile']
    assert h.log.any { String l -> l.contains('performance recorded for groovy/app #1') }
}

tests['a body that fails still reports, and the failure propagates'] = {
    PipelineHarness h = harness(url, 'groovy/failing', 1)
    Script autopilot = h.load('autopilot')
    try {
        autopilot.podTemplate(type: 'test', load: 0) { h.shell([script: 'exit 3']) }
        throw new AssertionError('the failure was swallowed')
    } catch (PipelineError e) {
        assert e.message.contains('exit code 3')
    }
    assert h.log.any { String l -> l.contains('performance recorded for groovy/failing #1') }
}

tests['five reported builds teach the service: the sixth gets the learned size'] = {
    (1..5).each { int n ->
        PipelineHarness h = harness(url, 'groovy/learner', n)
        Map p = h.load('autopilot').podTemplate(type: 'test', load: 10) { Map profile -> profile }
        assert p.source == 'rule' && p.profile == 'light'
    }
    PipelineHarness h = harness(url, 'groovy/learner', 6)
    Map p = h.load('autopilot').profile(type: 'test', load: 10)
    // The fixture peaks at 300Mi: + 15 % does not fit light's 256Mi.
    assert p.source == 'learned'
    assert p.profile == 'medium'
}

tests['with the service down the build goes on: fallback profile, warnings, no report'] = {
    PipelineHarness h = harness('http://127.0.0.1:9', 'groovy/down', 1)
    Script autopilot = h.load('autopilot')
    Map p = autopilot.podTemplate(type: 'build') { Map profile -> profile }
    assert p.source == 'fallback'
    assert p.profile == 'medium'
    assert h.pods[0].yaml.contains('"memory": "512Mi"')
    assert h.log.any { String l -> l.startsWith('WARNING: autopilot: the service could not be asked') }
    assert h.log.any { String l -> l.startsWith('WARNING: autopilot: performance not recorded') }
    assert autopilot.recordPerformance() == false
    try {
        autopilot.profile(type: 'build', failOnError: true)
        throw new AssertionError('failOnError did not fail')
    } catch (PipelineError e) {
        assert e.message.contains('could not be asked')
    }
}

tests['a refused token or unreadable cgroup files warn and never fail the build'] = {
    PipelineHarness h = harness(url, 'groovy/refused', 1)
    h.credentials['jenkins-autopilot-token'] = 'not-a-token'
    Script autopilot = h.load('autopilot')
    Map p = autopilot.profile(type: 'build')
    assert p.source == 'fallback'
    assert h.log.any { String l -> l.contains('the service answered 401') }
    assert autopilot.recordPerformance(type: 'build') == false
    assert h.log.any { String l -> l.contains('performance not recorded: the service answered 401') }

    PipelineHarness empty = harness(url, 'groovy/nocgroup', 1)
    empty.shellEnv.AUTOPILOT_CGROUP_DIR = '/nonexistent'
    assert empty.load('autopilot').recordPerformance(type: 'build') == false
    assert empty.log.any { String l -> l.contains('cpu.stat and memory.peak not readable') }

    PipelineHarness nourl = harness(url, 'groovy/nourl', 1)
    nourl.env.remove('AUTOPILOT_URL')
    assert nourl.load('autopilot').recordPerformance() == false
    assert nourl.log.any { String l -> l.contains('set AUTOPILOT_URL') }
}

tests['node() announces the wait, then asks Jenkins for the executor'] = {
    PipelineHarness h = harness(url, 'groovy/pipeline', 12)
    Script autopilot = h.load('autopilot')
    long sent = System.currentTimeMillis()
    Object result = autopilot.node('linux') { 'built' }
    assert result == 'built'
    assert h.trace == ["POST ${url}/api/v1/controllers/prod/waiting".toString(), 'node linux']
    assert Api.parseJson(h.requests[0].requestBody) == [label: 'linux', job: 'groovy/pipeline', number: 12]
    assert h.requests[0].timeout == 2
    assert h.requests[0].customHeaders[0].maskValue == true
    assert h.log.any { String l -> l.contains('autopilot: waiting for linux: woke pool linux') }
    // The Rust side measures the time to the scale-up from here.
    println "announced-at-ms ${sent}"

    PipelineHarness other = harness(url, 'groovy/pipeline', 13)
    other.load('autopilot').node(wakeTimeout: 1, 'windows') { null }
    assert other.requests[0].timeout == 1
    assert other.nodes == ['windows']
    assert other.log.any { String l -> l.contains('waiting for windows: no pool has this label') }
}

tests['node() goes on when the service is down or refuses the token'] = {
    PipelineHarness down = harness('http://127.0.0.1:9', 'groovy/pipeline', 14)
    assert down.load('autopilot').node('linux') { 'built' } == 'built'
    assert down.nodes == ['linux']
    assert down.log.any { String l -> l.startsWith('WARNING: autopilot: the wait for linux was not announced') }

    PipelineHarness refused = harness(url, 'groovy/pipeline', 15)
    refused.credentials['jenkins-autopilot-token'] = 'not-a-token'
    assert refused.load('autopilot').node('linux') { 'built' } == 'built'
    assert refused.log.any { String l -> l.contains('not announced: the service answered 401') }
}

tests['an aborted build stops: no node, no pod, no report'] = {
    PipelineHarness h = harness(url, 'groovy/aborted', 1)
    h.abortDuringHttp = true
    Script autopilot = h.load('autopilot')
    ['node', 'podTemplate', 'profile'].each { String step ->
        try {
            switch (step) {
                case 'node': autopilot.node('linux') { 'built' }; break
                case 'podTemplate': autopilot.podTemplate(type: 'build') { 'built' }; break
                default: autopilot.profile(type: 'build')
            }
            throw new AssertionError("${step}: the abort was swallowed")
        } catch (FlowInterruptedException e) {
            assert e.message == 'the build was aborted'
        }
    }
    try {
        autopilot.recordPerformance(type: 'build')
        throw new AssertionError('recordPerformance: the abort was swallowed')
    } catch (FlowInterruptedException e) {
        assert e.message == 'the build was aborted'
    }
    assert h.nodes.empty && h.pods.empty
    assert !h.log.any { String l -> l.contains('fallback') || l.contains('medium profile') }
}

tests['podTemplate() passes yamlMergeStrategy next to inheritFrom'] = {
    PipelineHarness h = harness(url, 'groovy/merged', 1)
    Map merge = [strategy: 'merge']
    h.load('autopilot').podTemplate(type: 'build', inheritFrom: 'base', yamlMergeStrategy: merge, record: false) {
        null
    }
    assert h.pods[0].inheritFrom == 'base'
    assert h.pods[0].yamlMergeStrategy.is(merge)
}

int failed = 0
tests.each { String name, Closure body ->
    try {
        body.call()
        println "ok   ${name}"
    } catch (Throwable t) {
        failed++
        println "FAIL ${name}"
        t.printStackTrace(System.out)
    }
}
println "${tests.size() - failed} passed, ${failed} failed"
System.exit(failed ? 1 : 0)
