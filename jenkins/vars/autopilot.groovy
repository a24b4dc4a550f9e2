import groovy.transform.Field
import io.jenkinsautopilot.Api

/*
 * jenkins-autopilot from a Jenkinsfile.
 *
 *   autopilot.podTemplate(type: 'build') { profile ->
 *       sh 'make'                      // runs in the build container, sized for this job
 *   }
 *
 *   autopilot.node('linux') {          // node('linux') that wakes the linux agent pool first
 *       sh 'make'
 *   }
 *
 * Settings come from the arguments or from global environment variables:
 *   AUTOPILOT_URL             the service, e.g. http://jenkins-autopilot.ci:8080 (required)
 *   AUTOPILOT_CREDENTIALS_ID  a Secret text credential holding a token with the scopes
 *                             profiles:read and builds:write (default jenkins-autopilot-token)
 *   AUTOPILOT_CONTROLLER      this controller's name, as the webhooks give it (?controller=)
 */

@Field List stageTimings = []
@Field Map lastProfile = null

/** The service settings from the arguments, else from the environment. */
Map settings(Map args) {
    String url = args.url ?: env.AUTOPILOT_URL
    if (!url) {
        error('autopilot: set AUTOPILOT_URL (the service, e.g. http://jenkins-autopilot:8080) or pass url:')
    }
    return [
        url          : url,
        credentialsId: args.credentialsId ?: env.AUTOPILOT_CREDENTIALS_ID ?: 'jenkins-autopilot-token',
        controller   : args.controller ?: env.AUTOPILOT_CONTROLLER,
        job          : args.job ?: env.JOB_NAME,
        number       : args.number ?: env.BUILD_NUMBER,
        timeout      : args.timeout ?: 10,
    ]
}

/** Calls the service with the token from the Jenkins credential; returns [status, content]. */
Map callService(Map s, String method, String url, String body = null) {
    Map response = [:]
    withCredentials([string(credentialsId: s.credentialsId, variable: 'AUTOPILOT_TOKEN')]) {
        Map request = [
            url                   : url,
            httpMode              : method,
            customHeaders         : [[name: 'Authorization', value: "Bearer ${env.AUTOPILOT_TOKEN}", maskValue: true]],
            validResponseCodes    : '100:599',
            consoleLogResponseBody: false,
            quiet                 : true,
            timeout               : s.timeout,
        ]
        if (body != null) {
            request.contentType = 'APPLICATION_JSON'
            request.requestBody = body
        }
        Object answer = httpRequest(request)
        response = [status: answer.status, content: answer.content]
    }
    return response
}

/**
 * The profile for this build: [profile, requests, limits, source, reason, container,
 * pod_yaml, ...]. Arguments: type ('build', 'test', 'deploy', ...), and optionally load,
 * pool, image, job, controller, url, credentialsId, failOnError. When the service cannot
 * answer, the build goes on with the medium profile (and a warning) unless failOnError.
 */
Map profile(Map args = [:]) {
    Map s = settings(args)
    String type = args.type ?: Api.DEFAULT_TYPE
    String url = Api.selectUrl(s.url, [
        job: s.job, type: type, controller: s.controller, load: args.load, pool: args.pool, image: args.image,
    ])
    String reason
    try {
        Map response = callService(s, 'GET', url)
        if (response.status == 200) {
            Map p = Api.parseJson(response.content)
            p.type = type
            lastProfile = p
            echo "autopilot: ${type} build gets ${p.profile} (${p.source}): ${p.reason}"
            return p
        }
        reason = "the service answered ${response.status}: ${response.content}"
    } catch (InterruptedException e) {
        // An aborted build (FlowInterruptedException) stops here: no pod is created.
        throw e
    // A build must not fail because the service is down: any other failure means the fallback.
    // groovylint-disable-next-line CatchException
    } catch (Exception e) {
        reason = "the service could not be asked: ${e.message}"
    }
    if (args.failOnError) {
        error("autopilot: ${reason}")
    }
    echo "WARNING: autopilot: ${reason}; using the ${Api.FALLBACK.profile} profile"
    Map p = Api.fallbackProfile(args.image ?: 'eclipse-temurin:21-jdk', reason)
    p.type = type
    lastProfile = p
    return p
}

/**
 * Runs `body` in a pod sized for this build: the Kubernetes plugin's podTemplate with the
 * profile's pod YAML, a node on it, and the build container. The body gets the profile.
 * Afterwards the build's usage is reported (record: false to skip). Other arguments as
 * profile(); cloud, namespace, inheritFrom, yamlMergeStrategy and serviceAccount go to
 * podTemplate. Its pod comes from the Kubernetes plugin, not from an agent pool, so it
 * announces nothing: there is no pool to wake.
 */
Object podTemplate(Map args = [:], Closure body) {
    Map p = profile(args)
    Map podArgs = [yaml: p.pod_yaml]
    // yamlMergeStrategy next to inheritFrom: the plugin's default, override(), drops the
    // parent template's YAML; pass merge() to keep it.
    ['cloud', 'namespace', 'inheritFrom', 'yamlMergeStrategy', 'serviceAccount'].each { String key ->
        if (args[key]) {
            podArgs[key] = args[key]
        }
    }
    Object result = null
    steps.podTemplate(podArgs) {
        steps.node(env.POD_LABEL) {
            container(p.container ?: Api.FALLBACK.container) {
                try {
                    result = body.call(p)
                } finally {
                    if (args.record != false) {
                        recordPerformance(args + [profile: p])
                    }
                }
            }
        }
    }
    return result
}

/**
 * `node(label) { body }` that first tells the service a build is about to wait for an
 * executor of `label`, so the label's agent pool scales up before Jenkins even queues the
 * build (the CloudEvents plugin drops the queue events of Pipeline node steps). The call
 * is quick (a 2 s timeout, wakeTimeout: to change it) and never fails the build; an
 * abort still stops it. Other arguments as profile(): url, credentialsId, controller.
 */
Object node(String label, Closure body) {
    return node([:], label, body)
}

/** node(label) with settings, e.g. node(wakeTimeout: 1, 'linux') { ... }. */
Object node(Map args, String label, Closure body) {
    announce(args + [label: label])
    return steps.node(label) {
        body.call()
    }
}

/** Announces a build about to wait for `args.label`; true when the service took it. */
boolean announce(Map args) {
    try {
        Map s = settings(args + [timeout: args.wakeTimeout ?: 2])
        String url = Api.waitingUrl(s.url, s.controller ?: Api.DEFAULT_CONTROLLER)
        Map response = callService(s, Api.POST, url, Api.waitingBody(args.label, s.job, s.number))
        if (response.status == 202) {
            Map reply = Api.parseJson(response.content)
            String pools = reply.pools ? "woke pool ${reply.pools.join(', ')}" : 'no pool has this label'
            echo "autopilot: waiting for ${args.label}: ${pools}"
            return true
        }
        echo "WARNING: autopilot: the wait for ${args.label} was not announced: the service answered " +
            "${response.status}: ${response.content}"
    } catch (InterruptedException e) {
        throw e
    // The announcement only speeds the pool up: nothing here may fail the build.
    // groovylint-disable-next-line CatchException
    } catch (Exception e) {
        echo "WARNING: autopilot: the wait for ${args.label} was not announced: ${e.message}"
    }
    return false
}

/** A stage whose wall time goes into the performance report. */
Object stage(String name, Closure body) {
    long started = System.currentTimeMillis()
    try {
        return steps.stage(name) {
            body.call()
        }
    } finally {
        stageTimings << [name: name, duration_ms: System.currentTimeMillis() - started]
    }
}

/**
 * Reports what the build container used (its cgroup v2 files) with the profile it had and
 * the stage timings. Call it at the end of the build, in the build container. Never fails
 * the build: when the service or the files cannot be reached it warns and returns false.
 */
boolean recordPerformance(Map args = [:]) {
    try {
        Map s = settings(args)
        Map p = args.profile ?: lastProfile
        String script = libraryResource('io/jenkinsautopilot/cgroup-usage.sh')
        String output = sh(script: script, returnStdout: true, label: 'autopilot: read cgroup usage')
        Map usage = Api.parseUsage(output)
        String missing = Api.missing(usage)
        if (missing) {
            echo "WARNING: autopilot: performance not recorded: ${missing}"
            return false
        }
        Map body = [
            type      : args.type ?: p?.type ?: Api.DEFAULT_TYPE,
            elapsed_ms: usage.elapsed_ms,
            cgroup    : usage.cgroup,
            stages    : stageTimings,
        ]
        if (p?.requests) {
            body.requests = p.requests
        }
        if (p?.limits) {
            body.limits = p.limits
        }
        if (p?.profile && p?.source != 'fallback') {
            body.profile = p.profile
        }
        String url = Api.performanceUrl(s.url, s.controller ?: Api.DEFAULT_CONTROLLER, s.job, s.number)
        Map response = callService(s, Api.POST, url, Api.toJson(body))
        if (response.status == 201) {
            echo "autopilot: performance recorded for ${s.job} #${s.number}"
            return true
        }
        echo "WARNING: autopilot: performance not recorded: the service answered ${response.status}: " +
            response.content
    } catch (InterruptedException e) {
        throw e
    // Reporting is best effort: nothing here may fail the build.
    // groovylint-disable-next-line CatchException
    } catch (Exception e) {
        echo "WARNING: autopilot: performance not recorded: ${e.message}"
    }
    return false
}
