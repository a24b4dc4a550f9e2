// A Job DSL seed script that gives a Pipeline job the Notification plugin's endpoint
// without a properties([...]) step: the job sends events from its first build on, and
// the job's other properties stay as they are. The endpoint is the job's config.xml
// element, written with Job DSL's configure block; the URL (with the webhook token) is
// the Secret text credential `autopilot-notification-url`.
pipelineJob('app') {
    definition {
        cpsScm {
            scm {
                git {
                    remote {
                        url('https://git.example.com/team/app.git')
                    }
                    branch('main')
                }
            }
            scriptPath('Jenkinsfile')
        }
    }
    configure { project ->
        project / 'properties' / 'com.tikal.hudson.plugins.notification.HudsonNotificationProperty' / 'endpoints' <<
            'com.tikal.hudson.plugins.notification.Endpoint' {
                protocol('HTTP')
                format('JSON')
                urlInfo {
                    urlOrId('autopilot-notification-url')
                    urlType('SECRET')
                }
                event('all')
                timeout(5000)
                loglines(0)
                retries(1)
            }
    }
}
