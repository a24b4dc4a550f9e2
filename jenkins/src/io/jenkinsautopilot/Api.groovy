package io.jenkinsautopilot

import groovy.json.JsonOutput
import groovy.json.JsonSlurperClassic

/**
 * The pure part of the library: URLs, the fallback profile and the parsing of
 * cgroup-usage.sh's output. No pipeline steps here, so it runs anywhere.
 */
class Api implements Serializable {

    private static final long serialVersionUID = 1L
    private static final String SLASH = '/'

    /** The controller's name in the service when AUTOPILOT_CONTROLLER names none. */
    static final String DEFAULT_CONTROLLER = 'default'
    static final String POST = 'POST'

    /** The build type when a pipeline names none. */
    static final String DEFAULT_TYPE = 'build'
    private static final List<String> REQUIRED_FILES = ['cpu.stat', 'memory.peak'].asImmutable()
    private static final List<String> FILES = (REQUIRED_FILES + ['memory.events']).asImmutable()

    /** Used when the service cannot be asked: the design's `medium` profile. */
    static final Map FALLBACK = [
        profile  : 'medium',
        source   : 'fallback',
        requests : [cpu: '500m', memory: '512Mi'],
        limits   : [cpu: '1', memory: '768Mi'],
        container: 'build',
    ].asImmutable()

    /** Percent-encodes one path segment or query value (spaces as %20). */
    static String encode(String value) {
        return URLEncoder.encode(value, 'UTF-8').replace('+', '%20')
    }

    /** A job's full name as path segments: each folder encoded, joined by '/'. */
    static String jobPath(String job) {
        return job.split(SLASH).collect { String part -> encode(part) }.join(SLASH)
    }

    /** `base` + `path` + the query of the non-null entries of `query`. */
    static String url(String base, String path, Map query = [:]) {
        String root = base.endsWith(SLASH) ? base[0..-2] : base
        List<String> pairs = query.findAll { k, v -> v != null }.collect { k, v ->
            "${encode(k.toString())}=${encode(v.toString())}".toString()
        }
        return root + path + (pairs ? '?' + pairs.join('&') : '')
    }

    /** The profile selection URL for a build. */
    static String selectUrl(String base, Map args) {
        return url(base, '/api/v1/profiles/select', [
            job       : args.job,
            type      : args.type ?: DEFAULT_TYPE,
            controller: args.controller,
            load      : args.load,
            pool      : args.pool,
            image     : args.image,
        ])
    }

    /** The performance report URL of a build. */
    static String performanceUrl(String base, String controller, String job, Object number) {
        return url(base, "/api/v1/builds/${encode(controller)}/${jobPath(job)}/${number}/performance")
    }

    /** Where a pipeline announces a build about to wait for a label of `controller`. */
    static String waitingUrl(String base, String controller) {
        return url(base, "/api/v1/controllers/${encode(controller)}/waiting")
    }

    /** The announcement's body: the label, with the job and build for the service's log. */
    static String waitingBody(String label, String job, Object number) {
        Map body = [label: label]
        if (job) {
            body.job = job
        }
        if (number?.toString()?.long) {
            body.number = number.toString().toLong()
        }
        return JsonOutput.toJson(body)
    }

    /** A pod with one build container of the fallback's size, for when the service is down. */
    static String fallbackPodYaml(String image) {
        Map pod = [
            apiVersion: 'v1',
            kind      : 'Pod',
            metadata  : [labels: ['jenkins-autopilot/profile': FALLBACK.profile]],
            spec      : [containers: [[
                name     : FALLBACK.container,
                image    : image,
                command  : ['sleep', 'infinity'],
                resources: [requests: FALLBACK.requests, limits: FALLBACK.limits],
            ]]],
        ]
        // JSON is YAML: the plugin reads either.
        return JsonOutput.prettyPrint(JsonOutput.toJson(pod))
    }

    /** The fallback profile as the service would answer it. */
    static Map fallbackProfile(String image, String reason) {
        Map p = new LinkedHashMap(FALLBACK)
        p.reason = reason
        p.pod_yaml = fallbackPodYaml(image)
        return p
    }

    /**
     * Splits cgroup-usage.sh's output into the report's fields:
     * [cgroup: ['cpu.stat': ..., 'memory.peak': ..., 'memory.events': ...], elapsed_ms: n].
     * Sections the container could not read are absent.
     */
    static Map parseUsage(String output) {
        Map<String, StringBuilder> sections = [:]
        String current = null
        output.readLines().each { String line ->
            if (line.startsWith('=== ')) {
                current = line.substring(4).trim()
                sections[current] = new StringBuilder()
            } else if (current != null) {
                sections[current].append(line).append('\n')
            }
        }
        Map cgroup = [:]
        FILES.each { String f ->
            if (sections.containsKey(f)) {
                cgroup[f] = sections[f].toString()
            }
        }
        Map usage = [cgroup: cgroup]
        String elapsed = sections['elapsed_ms']?.toString()?.trim()
        if (elapsed?.long) {
            usage.elapsed_ms = elapsed.toLong()
        }
        return usage
    }

    /** What is missing for a report, or null when nothing is. */
    static String missing(Map usage) {
        List<String> absent = REQUIRED_FILES.findAll { String f -> !usage.cgroup.containsKey(f) }
        if (absent) {
            return "${absent.join(' and ')} not readable (cgroup v2 with kernel 5.19 or later is needed)"
        }
        return usage.elapsed_ms > 0 ? null : 'the container\'s running time is unknown'
    }

    static String toJson(Map body) {
        return JsonOutput.toJson(body)
    }

    static Map parseJson(String text) {
        return (Map) new JsonSlurperClassic().parseText(text)
    }

}
